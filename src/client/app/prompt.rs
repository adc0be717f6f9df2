//! A one-line prompt at the bottom of the screen, as vim's command line:
//! `g` asks for the pixel to go to. Enter hands the answer on as a
//! [`Request`]; a line that does not read is said on the prompt itself.

use ratatui::crossterm::event::{Event as TermEvent, KeyEvent};
use tui_input::Input;
use tui_input::backend::crossterm::EventHandler;

use super::Request;
use crate::client::keys::{self, Action};

/// What the prompt asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// A pixel to go to: `x y`.
    GoTo,
}

impl Ask {
    /// The words before the input.
    pub fn label(self) -> &'static str {
        match self {
            Ask::GoTo => "go to x y: ",
        }
    }
}

/// The prompt's state.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// What it asks for.
    pub ask: Ask,
    /// The line typed.
    pub input: Input,
    /// Why the last Enter was not taken.
    pub error: Option<String>,
}

impl Prompt {
    /// An empty prompt asking for `ask`.
    pub fn new(ask: Ask) -> Self {
        Self {
            ask,
            input: Input::default(),
            error: None,
        }
    }

    /// Every key while the prompt is up.
    pub fn on_key(&mut self, key: KeyEvent, out: &mut Vec<Request>) {
        match keys::lookup(keys::PROMPT, &key) {
            Some(Action::Send) => match (self.ask, parse_xy(self.input.value())) {
                (Ask::GoTo, Ok((x, y))) => {
                    out.push(Request::GoTo(x, y));
                    out.push(Request::FocusCanvas);
                }
                (_, Err(why)) => self.error = Some(why),
            },
            Some(Action::Back) => out.push(Request::FocusCanvas),
            _ => {
                self.error = None;
                self.input.handle_event(&TermEvent::Key(key));
            }
        }
    }
}

/// Reads a pixel as people write one: `1000 1000`, `1000,1000`,
/// `(1000, 1000)`.
pub fn parse_xy(text: &str) -> Result<(u32, u32), String> {
    let cleaned: String = text
        .chars()
        .map(|c| if matches!(c, ',' | '(' | ')') { ' ' } else { c })
        .collect();
    let numbers: Vec<&str> = cleaned.split_whitespace().collect();
    match numbers.as_slice() {
        [x, y] => match (x.parse(), y.parse()) {
            (Ok(x), Ok(y)) => Ok((x, y)),
            _ => Err("x and y are whole numbers from 0".into()),
        },
        _ => Err("type two numbers: x y".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_read_as_people_write_them() {
        assert_eq!(parse_xy("1000 1000"), Ok((1000, 1000)));
        assert_eq!(parse_xy(" (3, 4) "), Ok((3, 4)));
        assert_eq!(parse_xy("3,4"), Ok((3, 4)));
        assert!(parse_xy("3").is_err());
        assert!(parse_xy("-1 4").is_err());
        assert!(parse_xy("a b").is_err());
    }
}
