//! Presence for crowds. Below the presence threshold every join and leave
//! is its own `JOINED` or `LEFT`, which costs a crowd of N arriving users
//! N²/2 deliveries. At or above it, joins and leaves collect here and go
//! out together as one periodic `PRESENCE` event: the count online, how
//! many came and went, and the names, capped (Twitch does the same for
//! channels of 1,000 and more).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::protocol::{MAX_PRESENCE_NAMES, Presence};

/// Who came and went since the last `PRESENCE`, net: someone who joined
/// and left in between is in neither list.
#[derive(Debug, Default)]
pub(super) struct Batch {
    /// By lower-cased name, so the lists come out sorted as `WHO` sorts.
    joined: BTreeMap<String, Arc<str>>,
    left: BTreeMap<String, Arc<str>>,
    /// The count online changed (quiet users are counted, never named).
    changed: bool,
}

impl Batch {
    /// `name` came (`true`) or went.
    pub fn note(&mut self, name: &Arc<str>, quiet: bool, came: bool) {
        self.changed = true;
        if quiet {
            return;
        }
        let key = name.to_ascii_lowercase();
        let (this, other) = if came {
            (&mut self.joined, &mut self.left)
        } else {
            (&mut self.left, &mut self.joined)
        };
        if other.remove(&key).is_none() {
            this.insert(key, name.clone());
        }
    }

    /// The event that says what changed, with `online` users now, and an
    /// empty batch again; `None` when nothing changed.
    pub fn take(&mut self, online: usize) -> Option<Presence> {
        if !self.changed {
            return None;
        }
        let Batch { joined, left, .. } = std::mem::take(self);
        let count = |m: &BTreeMap<String, Arc<str>>| u32::try_from(m.len()).unwrap_or(u32::MAX);
        Some(Presence {
            online: u32::try_from(online).unwrap_or(u32::MAX),
            joined: count(&joined),
            left: count(&left),
            joined_names: joined.into_values().take(MAX_PRESENCE_NAMES).collect(),
            left_names: left.into_values().take(MAX_PRESENCE_NAMES).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn comings_and_goings_net_out_and_names_are_capped() {
        let mut b = Batch::default();
        assert_eq!(b.take(5), None);
        b.note(&n("Bob"), false, true);
        b.note(&n("al"), false, true);
        b.note(&n("al"), false, false);
        b.note(&n("cy"), false, false);
        b.note(&n("cy"), false, true);
        b.note(&n("dee"), false, false);
        b.note(&n("cron"), true, true);
        let p = b.take(7).unwrap();
        assert_eq!((p.online, p.joined, p.left), (7, 1, 1));
        assert_eq!(p.joined_names, [n("Bob")]);
        assert_eq!(p.left_names, [n("dee")]);
        assert_eq!(b.take(7), None, "taking empties the batch");
        // A quiet user is counted in `online` only, but still makes news.
        b.note(&n("cron"), true, false);
        let p = b.take(6).unwrap();
        assert_eq!((p.online, p.joined, p.left), (6, 0, 0));
        for i in 0..(MAX_PRESENCE_NAMES + 50) {
            b.note(&n(&format!("u{i:04}")), false, true);
        }
        let p = b.take(1000).unwrap();
        assert_eq!(p.joined as usize, MAX_PRESENCE_NAMES + 50);
        assert_eq!(p.joined_names.len(), MAX_PRESENCE_NAMES);
        assert_eq!(&*p.joined_names[0], "u0000");
    }
}
