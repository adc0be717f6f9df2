//! The chat pane: the scrollback, how far it is scrolled back, and the
//! input line. A line typed and sent goes out as a [`Request`]; whether it
//! can be sent (online or not) is for the app to say.

use std::collections::VecDeque;

use ratatui::crossterm::event::{Event as TermEvent, KeyEvent, MouseButton, MouseEventKind};
use ratatui::layout::{Position, Rect};
use tui_input::Input;
use tui_input::backend::crossterm::EventHandler;

use super::Request;
use super::layout::Areas;
use super::session::Sent;
use super::wrap::wrap;
use crate::client::keys::{self, Action};
use crate::protocol::Command;

/// Chat lines kept for scrolling back.
pub const CHAT_LINES: usize = 1000;
/// Chat lines the mouse wheel scrolls.
const WHEEL_LINES: usize = 3;

/// One line of the chat pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatLine {
    /// Public chat.
    Msg {
        /// Sender.
        from: String,
        /// Message.
        text: String,
    },
    /// A direct message to us.
    DmIn {
        /// Sender.
        from: String,
        /// Message.
        text: String,
    },
    /// A direct message we sent.
    DmOut {
        /// Recipient.
        to: String,
        /// Message.
        text: String,
    },
    /// Chat from before we joined, sent by the server after `JOIN`.
    History {
        /// Sender.
        from: String,
        /// Message.
        text: String,
    },
    /// Someone joined.
    Joined(String),
    /// Someone left.
    Left(String),
    /// Something the client says (connected, the user list, ...).
    Info(String),
    /// Something that failed.
    Error(String),
}

/// What a piece of a chat line is, for the drawing to style it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone<'a> {
    /// Message text.
    Plain,
    /// A user's name, drawn in that user's colour.
    Speaker(&'a str),
    /// A user's name in old chat (history).
    PastSpeaker,
    /// Old chat, joins, leaves and the client's notes.
    Dim,
    /// The `[dm]` marks.
    DmMark,
    /// A direct message's text.
    DmText,
    /// Something that failed.
    Error,
}

/// A piece of a chat line: how it is drawn and its text.
pub type Piece<'a> = (Tone<'a>, &'a str);

impl ChatLine {
    /// The line as pieces, in order.
    pub fn pieces(&self) -> Vec<Piece<'_>> {
        use Tone::*;
        match self {
            ChatLine::Msg { from, text } => {
                vec![(Speaker(from), from), (Plain, ": "), (Plain, text)]
            }
            ChatLine::DmIn { from, text } => vec![
                (DmMark, "[dm] "),
                (Speaker(from), from),
                (Plain, ": "),
                (DmText, text),
            ],
            ChatLine::DmOut { to, text } => vec![
                (DmMark, "[dm → "),
                (Speaker(to), to),
                (DmMark, "] "),
                (DmText, text),
            ],
            ChatLine::History { from, text } => {
                vec![(PastSpeaker, from), (Dim, ": "), (Dim, text)]
            }
            ChatLine::Joined(name) => vec![(Dim, "→ "), (Dim, name), (Dim, " joined")],
            ChatLine::Left(name) => vec![(Dim, "← "), (Dim, name), (Dim, " left")],
            ChatLine::Info(text) => vec![(Dim, "· "), (Dim, text)],
            ChatLine::Error(text) => vec![(Error, "! "), (Error, text)],
        }
    }
}

/// The chat pane's state.
#[derive(Debug, Clone, Default)]
pub struct ChatPane {
    /// Scrollback, oldest first.
    pub lines: VecDeque<ChatLine>,
    /// Rows scrolled back from the newest row (0: following).
    pub scroll: usize,
    /// The input line.
    pub input: Input,
}

impl ChatPane {
    /// Adds a line, forgetting the oldest beyond [`CHAT_LINES`].
    pub fn push(&mut self, line: ChatLine) {
        if self.lines.len() == CHAT_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// Every line wrapped to `width` columns, oldest row first: what the
    /// messages area shows, and what scrolling counts.
    pub fn rows(&self, width: u16) -> Vec<Vec<Piece<'_>>> {
        self.lines
            .iter()
            .flat_map(|line| wrap(&line.pieces(), width))
            .collect()
    }

    /// How many rows [`ChatPane::rows`] makes at `width`.
    pub fn row_count(&self, width: u16) -> usize {
        self.lines
            .iter()
            .map(|line| wrap(&line.pieces(), width).len())
            .sum()
    }

    /// A key while the input has the focus: the line editor's keys, send,
    /// back, scroll.
    pub fn on_key(&mut self, key: KeyEvent, areas: Option<&Areas>, out: &mut Vec<Request>) {
        match keys::lookup(keys::CHATTING, &key) {
            Some(Action::Send) => self.submit(out),
            Some(Action::Back) => out.push(Request::FocusCanvas),
            Some(action @ (Action::ScrollUp | Action::ScrollDown)) => self.page(action, areas),
            _ => {
                self.input.handle_event(&TermEvent::Key(key));
            }
        }
    }

    /// A drawing key that concerns the chat. `false` passes it on.
    pub fn on_action(
        &mut self,
        action: Action,
        areas: Option<&Areas>,
        out: &mut Vec<Request>,
    ) -> bool {
        match action {
            Action::Chat => out.push(Request::FocusChat),
            Action::Command => {
                out.push(Request::FocusChat);
                if self.input.value().is_empty() {
                    self.input = Input::new("/".into());
                }
            }
            Action::ScrollUp | Action::ScrollDown => self.page(action, areas),
            Action::Follow => self.scroll = 0,
            _ => return false,
        }
        true
    }

    /// A click or wheel turn at `at`. `false` when it is not on the chat.
    pub fn on_mouse(
        &mut self,
        kind: MouseEventKind,
        at: Position,
        areas: &Areas,
        out: &mut Vec<Request>,
    ) -> bool {
        if !areas.chat.contains(at) {
            return false;
        }
        match kind {
            MouseEventKind::Down(MouseButton::Left) => out.push(Request::FocusChat),
            MouseEventKind::ScrollUp => {
                self.scroll_by(Action::ScrollUp, WHEEL_LINES, areas.messages)
            }
            MouseEventKind::ScrollDown => {
                self.scroll_by(Action::ScrollDown, WHEEL_LINES, areas.messages)
            }
            _ => return false,
        }
        true
    }

    /// The line went out: clear the input and show the newest lines.
    pub fn sent(&mut self) {
        self.input.reset();
        self.scroll = 0;
    }

    /// Puts a chat line that did not go through back into an empty input.
    pub fn restore(&mut self, line: String) {
        if self.input.value().is_empty() {
            self.input = Input::new(line);
        }
    }

    /// PgUp, PgDn: half the messages area at a time.
    fn page(&mut self, action: Action, areas: Option<&Areas>) {
        if let Some(areas) = areas {
            let rows = usize::from(areas.messages.height / 2).max(1);
            self.scroll_by(action, rows, areas.messages);
        }
    }

    fn scroll_by(&mut self, action: Action, rows: usize, messages: Rect) {
        let most = self.row_count(messages.width).saturating_sub(1);
        self.scroll = match action {
            Action::ScrollUp => (self.scroll + rows).min(most),
            _ => self.scroll.saturating_sub(rows),
        };
    }

    /// Enter: an empty line goes back to drawing; a command or text is
    /// handed on; a mistyped command is said here.
    fn submit(&mut self, out: &mut Vec<Request>) {
        let line = self.input.value().to_string();
        if line.trim().is_empty() {
            self.input.reset();
            out.push(Request::FocusCanvas);
            return;
        }
        match parse_chat(&line) {
            Ok(ChatInput::Local(request)) => {
                self.input.reset();
                out.push(request);
            }
            Ok(ChatInput::Send(cmd, sent)) => out.push(Request::Say { cmd, sent }),
            Err(why) => self.push(ChatLine::Error(why)),
        }
    }
}

/// What a chat input line asks for.
enum ChatInput {
    Send(Command, Sent),
    Local(Request),
}

/// Reads a chat line: text to say, or a `/command`.
fn parse_chat(line: &str) -> Result<ChatInput, String> {
    let Some(rest) = line.strip_prefix('/') else {
        return Ok(say(line, line));
    };
    if rest.starts_with('/') {
        // "//text" says "/text".
        return Ok(say(rest, line));
    }
    let (word, args) = rest.split_once(' ').unwrap_or((rest, ""));
    let args = args.trim_start();
    match word.to_ascii_lowercase().as_str() {
        "tell" | "msg" => {
            let (to, text) = args.split_once(' ').unwrap_or((args, ""));
            let text = text.trim_start();
            if to.is_empty() || text.is_empty() {
                return Err("usage: /tell NAME text".into());
            }
            Ok(ChatInput::Send(
                Command::Tell {
                    to: to.to_string(),
                    text: text.to_string(),
                },
                Sent::Tell {
                    to: to.to_string(),
                    text: text.to_string(),
                    line: line.to_string(),
                },
            ))
        }
        "who" => Ok(ChatInput::Send(Command::Who, Sent::Who)),
        "kick" | "ban" => {
            let name = args.trim();
            if name.is_empty() || name.contains(' ') {
                return Err(format!("usage: /{} NAME", word.to_ascii_lowercase()));
            }
            let name = name.to_string();
            Ok(if word.eq_ignore_ascii_case("kick") {
                ChatInput::Send(Command::Kick { name: name.clone() }, Sent::Kick { name })
            } else {
                ChatInput::Send(Command::Ban { name: name.clone() }, Sent::Ban { name })
            })
        }
        "template" => parse_template(args).map(ChatInput::Local),
        "help" => Ok(ChatInput::Local(Request::Help)),
        "quit" => Ok(ChatInput::Local(Request::Quit)),
        _ => Err(format!(
            "unknown command /{word}: try /tell NAME text, /who, /template FILE X,Y, /kick NAME, /ban NAME, /help, /quit (// to say a line starting with /)"
        )),
    }
}

/// `/template FILE X,Y` (or `X Y`), or `/template off`.
fn parse_template(args: &str) -> Result<Request, String> {
    const USAGE: &str = "usage: /template FILE.png X,Y (or /template off)";
    let args = args.trim();
    if args.eq_ignore_ascii_case("off") {
        return Ok(Request::NoTemplate);
    }
    // The place is the last one or two words; the path is what comes
    // before, spaces and all.
    let words: Vec<&str> = args.split_whitespace().collect();
    let read = |x: &str, y: &str| Some((x.parse::<u16>().ok()?, y.parse::<u16>().ok()?));
    let (at, path_words) = match words.as_slice() {
        [path @ .., x, y] if !path.is_empty() && read(x, y).is_some() => (read(x, y), path.len()),
        [path @ .., xy] if !path.is_empty() => match xy.split_once(',') {
            Some((x, y)) => (read(x, y), path.len()),
            None => (None, 0),
        },
        _ => (None, 0),
    };
    let at = at.ok_or(USAGE)?;
    let path = words[..path_words].join(" ");
    Ok(Request::Template { path, at })
}

fn say(text: &str, line: &str) -> ChatInput {
    ChatInput::Send(
        Command::Say {
            text: text.to_string(),
        },
        Sent::Say {
            line: line.to_string(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(text: &str) -> ChatLine {
        ChatLine::Msg {
            from: "bob".into(),
            text: text.into(),
        }
    }

    #[test]
    fn rows_count_wrapped_lines_at_the_width() {
        let mut chat = ChatPane::default();
        chat.push(msg("one two three four"));
        chat.push(ChatLine::Joined("carol".into()));
        // "bob: one two" / "three four" / "→ carol joined"
        assert_eq!(chat.row_count(14), 3);
        assert_eq!(chat.row_count(13), 4, "→ carol / joined");
        assert_eq!(chat.row_count(40), 2);
        let rows = chat.rows(14);
        assert_eq!(
            rows[0],
            [
                (Tone::Speaker("bob"), "bob"),
                (Tone::Plain, ": "),
                (Tone::Plain, "one two")
            ]
        );
        assert_eq!(rows.len(), chat.row_count(14));
    }

    #[test]
    fn the_wheel_scrolls_by_wrapped_rows_and_stops_at_the_top() {
        let mut chat = ChatPane::default();
        for _ in 0..4 {
            chat.push(msg("a message long enough to take two rows"));
        }
        let areas = Areas::compute(Rect::new(0, 0, 80, 24), Some((64, 64)), 1).unwrap();
        let width = areas.messages.width;
        assert_eq!(chat.row_count(width), 8, "width {width}");
        let at = Position::new(areas.messages.x, areas.messages.y);
        let mut out = Vec::new();
        assert!(chat.on_mouse(MouseEventKind::ScrollUp, at, &areas, &mut out));
        assert_eq!(chat.scroll, 3);
        for _ in 0..3 {
            chat.on_mouse(MouseEventKind::ScrollUp, at, &areas, &mut out);
        }
        assert_eq!(chat.scroll, 7, "at most the rows there are, less one");
        let outside = Position::new(areas.canvas.x, areas.canvas.y);
        assert!(!chat.on_mouse(MouseEventKind::ScrollDown, outside, &areas, &mut out));
        assert!(out.is_empty());
    }
}
