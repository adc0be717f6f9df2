//! The users pane: who is online, as far as the server named them, and
//! which of them is us.

use crate::protocol::Presence;

/// Users online.
#[derive(Debug, Clone, Default)]
pub struct Users {
    /// Names, sorted ignoring case (as many as the server named).
    pub names: Vec<String>,
    /// Users online the server did not name: it lists at most
    /// `MAX_LISTED_USERS` in `WELCOME` and `WHO`.
    pub unlisted: u32,
    /// Our name once joined.
    pub me: Option<String>,
    /// How many came and went by the last `PRESENCE` (a crowd's periodic
    /// report), until a list or a single join or leave replaces it.
    pub churn: Option<(u32, u32)>,
}

impl Users {
    /// The list from a `WELCOME` or a `WHO` answer: `online` users, of
    /// whom `names` were named.
    pub fn set(&mut self, mut names: Vec<String>, online: u32) {
        self.unlisted = online.saturating_sub(names.len() as u32);
        names.sort_by_key(|n| n.to_ascii_lowercase());
        self.names = names;
        self.churn = None;
    }

    /// A crowd's report: the names it gives come and go, and the count is
    /// the server's (those who came and went unnamed stay unlisted).
    pub fn presence(&mut self, p: &Presence) {
        for name in &p.left_names {
            self.names.retain(|u| !u.eq_ignore_ascii_case(name));
        }
        for name in &p.joined_names {
            if !self.names.iter().any(|u| u.eq_ignore_ascii_case(name)) {
                self.names.push(name.to_string());
            }
        }
        self.names.sort_by_key(|n| n.to_ascii_lowercase());
        self.unlisted = p.online.saturating_sub(self.names.len() as u32);
        self.churn = Some((p.joined, p.left));
    }

    /// Someone joined.
    pub fn joined(&mut self, name: &str) {
        self.churn = None;
        if !self.names.iter().any(|u| u.eq_ignore_ascii_case(name)) {
            self.names.push(name.to_string());
            self.names.sort_by_key(|n| n.to_ascii_lowercase());
        }
    }

    /// Someone left.
    pub fn left(&mut self, name: &str) {
        self.churn = None;
        let before = self.names.len();
        self.names.retain(|u| !u.eq_ignore_ascii_case(name));
        if self.names.len() == before {
            self.unlisted = self.unlisted.saturating_sub(1);
        }
    }

    /// Offline: nobody is known to be online.
    pub fn clear(&mut self) {
        self.names.clear();
        self.churn = None;
    }

    /// Users online, named or not.
    pub fn online(&self) -> usize {
        self.names.len() + self.unlisted as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_and_leaves_keep_the_list_sorted_and_counted() {
        let mut users = Users::default();
        users.set(vec!["bob".into(), "Alice".into()], 5);
        assert_eq!(
            (users.names.as_slice(), users.online()),
            (&["Alice".to_string(), "bob".to_string()][..], 5)
        );
        users.joined("carol");
        users.joined("BOB");
        assert_eq!(users.names, ["Alice", "bob", "carol"]);
        users.left("zed");
        assert_eq!(
            (users.unlisted, users.online()),
            (2, 5),
            "an unnamed user left"
        );
        users.left("ALICE");
        assert_eq!(users.names, ["bob", "carol"]);
    }

    #[test]
    fn a_crowds_presence_keeps_the_count_and_the_names_it_gives() {
        use std::sync::Arc;
        let mut users = Users::default();
        users.set(Vec::new(), 1500);
        users.presence(&Presence {
            online: 1503,
            joined: 5,
            left: 2,
            joined_names: vec![Arc::from("zoe"), Arc::from("Amy")],
            left_names: vec![Arc::from("nobody-listed")],
        });
        assert_eq!(users.names, ["Amy", "zoe"]);
        assert_eq!(users.online(), 1503);
        assert_eq!(users.churn, Some((5, 2)));
        users.presence(&Presence {
            online: 1502,
            joined: 0,
            left: 1,
            joined_names: Vec::new(),
            left_names: vec![Arc::from("ZOE")],
        });
        assert_eq!(
            (users.names.as_slice(), users.online()),
            (&["Amy".to_string()][..], 1502)
        );
    }
}
