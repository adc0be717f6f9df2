//! The login screen's form: the name, the password once the server asked
//! for one, which field has the keys, and why the last login failed.

use ratatui::crossterm::event::{Event as TermEvent, KeyEvent};
use tui_input::Input;
use tui_input::backend::crossterm::EventHandler;

use super::Request;
use crate::client::keys::{self, Action};
use crate::protocol::validate_name;

/// The first screen, when no usable `--name` was given, or the server
/// refused the name or the password.
#[derive(Clone, Default)]
pub struct LoginForm {
    /// The name being typed.
    pub name: Input,
    /// The password being typed (drawn masked). Shown only once the server
    /// asked for one, or when the refused login had one.
    pub password: Option<Input>,
    /// The field keys go to.
    pub field: Field,
    /// Why the last login was refused, by us or the server.
    pub error: Option<String>,
}

impl std::fmt::Debug for LoginForm {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm")
            .field("name", &self.name.value())
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("field", &self.field)
            .field("error", &self.error)
            .finish()
    }
}

/// A field of the login screen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Field {
    /// The user name.
    #[default]
    Name,
    /// The server password.
    Password,
}

impl LoginForm {
    /// A form opened on `field`, saying `why`, with `name` filled in and a
    /// password field holding `password` when there is one.
    pub fn new(name: String, password: Option<Input>, field: Field, why: String) -> Self {
        Self {
            name: Input::new(name),
            password,
            field,
            error: Some(why),
        }
    }

    /// Every key on the login screen: the form's own, or typing.
    pub fn on_key(&mut self, key: KeyEvent, out: &mut Vec<Request>) {
        match keys::lookup(keys::LOGIN, &key) {
            Some(Action::Send) => self.submit(out),
            Some(Action::NextField) if self.password.is_some() => {
                self.field = match self.field {
                    Field::Name => Field::Password,
                    Field::Password => Field::Name,
                };
            }
            Some(Action::Quit) => out.push(Request::Quit),
            _ => {
                let input = match (self.field, &mut self.password) {
                    (Field::Password, Some(password)) => password,
                    _ => &mut self.name,
                };
                input.handle_event(&TermEvent::Key(key));
            }
        }
    }

    /// Enter: from a good name to an empty password field first, else
    /// join with what the form holds.
    fn submit(&mut self, out: &mut Vec<Request>) {
        let name = self.name.value().trim().to_string();
        let typed = self.password.as_ref().map(|p| p.value().to_string());
        if validate_name(&name).is_ok() && typed.as_deref() == Some("") {
            if self.field == Field::Password {
                self.error = Some("type the server's password".into());
            }
            self.field = Field::Password;
            return;
        }
        out.push(Request::Join {
            name,
            password: typed,
        });
    }
}
