//! The chat pane: the scrollback with its timestamps, how far it is
//! scrolled back (the view stays still while lines arrive, and counts
//! them: `3 new ↓`), and the input line with Tab completion and the lines
//! sent before (`↑`, `↓`). A line typed and sent goes out as a
//! [`Request`]; whether it can be sent (online or not) is for the app to
//! say.

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
/// Lines sent kept for `↑`.
pub const INPUT_HISTORY: usize = 100;
/// Commands Tab completes.
const COMMAND_WORDS: &[&str] = &[
    "/tell ",
    "/msg ",
    "/who",
    "/template ",
    "/kick ",
    "/ban ",
    "/rollback ",
    "/fill ",
    "/help",
    "/quit",
];
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
    /// A rule between parts of the chat (before the history).
    Rule(String),
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
    /// Old chat's text.
    Past,
    /// A timestamp.
    Time,
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
                vec![(PastSpeaker, from), (Dim, ": "), (Past, text)]
            }
            ChatLine::Joined(name) => vec![(Dim, "→ "), (Dim, name), (Dim, " joined")],
            ChatLine::Left(name) => vec![(Dim, "← "), (Dim, name), (Dim, " left")],
            ChatLine::Info(text) => vec![(Dim, "· "), (Dim, text)],
            ChatLine::Error(text) => vec![(Error, "! "), (Error, text)],
            ChatLine::Rule(text) => vec![(Dim, "── "), (Dim, text), (Dim, " ──")],
        }
    }

    /// True when the line is for the user in particular: a DM, or a
    /// message that names them.
    pub fn mentions(&self, me: Option<&str>) -> bool {
        match (self, me) {
            (ChatLine::DmIn { .. }, _) => true,
            (ChatLine::Msg { from, text }, Some(me)) => {
                !from.eq_ignore_ascii_case(me)
                    && text
                        .split(|c: char| !(c.is_alphanumeric() || "_-.".contains(c)))
                        .any(|w| w.eq_ignore_ascii_case(me))
            }
            _ => false,
        }
    }
}

/// A Tab completion in progress: `Tab` again takes the next match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// Where the completed word starts (in characters).
    pub start: usize,
    /// The matches, in order.
    pub matches: Vec<String>,
    /// The one shown.
    pub index: usize,
    /// The input as the completion left it; another value means the line
    /// changed since, and Tab starts afresh.
    pub shown: String,
}

/// The chat pane's state.
#[derive(Debug, Clone)]
pub struct ChatPane {
    /// Scrollback, oldest first.
    pub lines: VecDeque<ChatLine>,
    /// Each line's time as shown (`14:05`), beside [`ChatPane::lines`].
    pub stamps: VecDeque<String>,
    /// Rows scrolled back from the newest row (0: following).
    pub scroll: usize,
    /// Lines that arrived while scrolled back and are not in view yet.
    pub unread: usize,
    /// Of those, the ones for the user (a DM, their name).
    pub unread_mentions: usize,
    /// Show the timestamps (`T` toggles).
    pub timestamps: bool,
    /// The input line.
    pub input: Input,
    /// Lines sent, oldest first, for `↑`.
    pub sent_lines: Vec<String>,
    /// The line sent that `↑` shows, and what was typed before it.
    recall: Option<(usize, String)>,
    /// A Tab completion in progress.
    pub completion: Option<Completion>,
    /// The messages area's size as last laid out (columns, rows), to
    /// count the rows a new line takes while scrolled back.
    pub view: (u16, u16),
    /// The user's name, to notice mentions.
    pub me: Option<String>,
    /// Unix milliseconds now, as the app last said.
    pub clock_ms: u64,
    /// Seconds east of UTC, for the local time of the stamps.
    pub utc_offset: i32,
}

impl Default for ChatPane {
    fn default() -> Self {
        Self {
            lines: VecDeque::new(),
            stamps: VecDeque::new(),
            scroll: 0,
            unread: 0,
            unread_mentions: 0,
            timestamps: true,
            input: Input::default(),
            sent_lines: Vec::new(),
            recall: None,
            completion: None,
            view: (0, 0),
            me: None,
            clock_ms: 0,
            utc_offset: 0,
        }
    }
}

impl ChatPane {
    /// Adds a line said now, forgetting the oldest beyond [`CHAT_LINES`].
    pub fn push(&mut self, line: ChatLine) {
        self.push_at(line, self.clock_ms);
    }

    /// Adds a line said at `unix_ms` (history says when). While scrolled
    /// back the view stays on what it shows, and the line is counted as
    /// unread.
    pub fn push_at(&mut self, line: ChatLine, unix_ms: u64) {
        if self.lines.len() == CHAT_LINES {
            self.lines.pop_front();
            self.stamps.pop_front();
        }
        if self.scroll > 0 {
            self.scroll += wrap(&self.pieces_of(&line, "00:00"), self.view.0.max(1)).len();
            self.unread += 1;
            if line.mentions(self.me.as_deref()) {
                self.unread_mentions += 1;
            }
        }
        self.stamps
            .push_back(format_stamp(unix_ms, self.clock_ms, self.utc_offset));
        self.lines.push_back(line);
    }

    /// A line's pieces, with its stamp first when stamps are shown.
    fn pieces_of<'a>(&self, line: &'a ChatLine, stamp: &'a str) -> Vec<Piece<'a>> {
        let mut pieces = line.pieces();
        // A rule marks a place in the chat, not a moment.
        if self.timestamps && !matches!(line, ChatLine::Rule(_)) {
            pieces.insert(0, (Tone::Time, stamp));
            pieces.insert(1, (Tone::Time, " "));
        }
        pieces
    }

    /// Every line wrapped to `width` columns, oldest row first: what the
    /// messages area shows, and what scrolling counts.
    pub fn rows(&self, width: u16) -> Vec<Vec<Piece<'_>>> {
        self.lines
            .iter()
            .zip(&self.stamps)
            .flat_map(|(line, stamp)| wrap(&self.pieces_of(line, stamp), width))
            .collect()
    }

    /// How many rows [`ChatPane::rows`] makes at `width`.
    pub fn row_count(&self, width: u16) -> usize {
        self.lines
            .iter()
            .zip(&self.stamps)
            .map(|(line, stamp)| wrap(&self.pieces_of(line, stamp), width).len())
            .sum()
    }

    /// Lines with a row below the view, newest first, as many as there
    /// are: how many of the unread are still out of sight.
    fn lines_below(&self) -> usize {
        let mut rows = 0;
        let mut lines = 0;
        for (line, stamp) in self.lines.iter().zip(&self.stamps).rev() {
            if rows >= self.scroll {
                break;
            }
            rows += wrap(&self.pieces_of(line, stamp), self.view.0.max(1)).len();
            lines += 1;
        }
        lines
    }

    /// Follows the newest lines again: nothing is unread any more.
    fn follow(&mut self) {
        self.scroll = 0;
        self.unread = 0;
        self.unread_mentions = 0;
    }

    /// A key while the input has the focus: the line editor's keys, send,
    /// back, scroll, complete (from `names`, the users online) and the
    /// lines sent before.
    pub fn on_key(
        &mut self,
        key: KeyEvent,
        areas: Option<&Areas>,
        names: &[String],
        out: &mut Vec<Request>,
    ) {
        let action = keys::lookup(keys::CHATTING, &key);
        if action != Some(Action::Complete) {
            self.completion = None;
        }
        match action {
            Some(Action::Send) => self.submit(out),
            Some(Action::Back) => out.push(Request::FocusCanvas),
            Some(action @ (Action::ScrollUp | Action::ScrollDown)) => self.page(action, areas),
            Some(Action::Complete) => self.complete(names),
            Some(Action::HistoryPrev) => self.recall_line(-1),
            Some(Action::HistoryNext) => self.recall_line(1),
            _ => {
                self.input.handle_event(&TermEvent::Key(key));
            }
        }
    }

    /// `↑` (`step` -1) and `↓` (1): walks the lines sent, and back to the
    /// line that was being typed.
    fn recall_line(&mut self, step: i32) {
        let len = self.sent_lines.len();
        let next = match (&self.recall, step) {
            (None, -1) if len > 0 => Some(len - 1),
            (None, _) => return,
            (Some((0, _)), -1) => Some(0),
            (Some((i, _)), -1) => Some(i - 1),
            (Some((i, _)), _) if i + 1 < len => Some(i + 1),
            (Some(_), _) => None,
        };
        match next {
            Some(i) => {
                let draft = match self.recall.take() {
                    Some((_, draft)) => draft,
                    None => self.input.value().to_string(),
                };
                self.input = Input::new(self.sent_lines[i].clone());
                self.recall = Some((i, draft));
            }
            None => {
                if let Some((_, draft)) = self.recall.take() {
                    self.input = Input::new(draft);
                }
            }
        }
    }

    /// Tab: completes the word before the cursor, a `/command` at the
    /// start of the line or a name anywhere (`name: ` at the start, as
    /// IRC clients do); Tab again takes the next match.
    fn complete(&mut self, names: &[String]) {
        let chars: Vec<char> = self.input.value().chars().collect();
        let cursor = self.input.cursor().min(chars.len());
        if let Some(c) = &mut self.completion
            && c.shown == self.input.value()
        {
            c.index = (c.index + 1) % c.matches.len();
        } else {
            let start = chars[..cursor]
                .iter()
                .rposition(|c| c.is_whitespace())
                .map_or(0, |i| i + 1);
            let word: String = chars[start..cursor].iter().collect();
            let lower = word.to_lowercase();
            let matches: Vec<String> = if start == 0 && word.starts_with('/') {
                COMMAND_WORDS
                    .iter()
                    .filter(|c| c.starts_with(&lower))
                    .map(|c| c.to_string())
                    .collect()
            } else {
                let suffix = if start == 0 { ": " } else { " " };
                names
                    .iter()
                    .map(|n| n.trim_end_matches('*'))
                    .filter(|n| n.to_lowercase().starts_with(&lower) && !word.is_empty())
                    .filter(|n| Some(*n) != self.me.as_deref())
                    .map(|n| format!("{n}{suffix}"))
                    .collect()
            };
            if matches.is_empty() {
                return;
            }
            self.completion = Some(Completion {
                start,
                matches,
                index: 0,
                shown: String::new(),
            });
        }
        let Some(c) = &mut self.completion else {
            return;
        };
        // The completed word runs from `start` to the cursor: the typed
        // prefix the first time, the previous match after that.
        let before: String = chars[..c.start].iter().collect();
        let after: String = chars[cursor..].iter().collect();
        let word = &c.matches[c.index];
        let value = format!("{before}{word}{after}");
        let at = before.chars().count() + word.chars().count();
        c.shown.clone_from(&value);
        self.input = Input::new(value).with_cursor(at);
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
            Action::Follow => self.follow(),
            Action::Timestamps => self.timestamps = !self.timestamps,
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
        self.follow();
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
        if self.scroll == 0 {
            self.follow();
        } else {
            // What scrolled into view is read.
            let below = self.lines_below();
            self.unread = self.unread.min(below);
            self.unread_mentions = self.unread_mentions.min(self.unread);
        }
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
        self.recall = None;
        if self.sent_lines.last() != Some(&line) {
            if self.sent_lines.len() == INPUT_HISTORY {
                self.sent_lines.remove(0);
            }
            self.sent_lines.push(line.clone());
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
        "rollback" | "fill" => parse_bulk(&word.to_ascii_lowercase(), args),
        "template" => parse_template(args).map(ChatInput::Local),
        "help" => Ok(ChatInput::Local(Request::Help)),
        "quit" => Ok(ChatInput::Local(Request::Quit)),
        _ => Err(format!(
            "unknown command /{word}: try /tell NAME text, /who, /template FILE X,Y, /kick NAME, /ban NAME, /rollback NAME [MIN], /fill X1 Y1 X2 Y2 COLOR, /help, /quit (// to say a line starting with /)"
        )),
    }
}

/// `/rollback NAME [MINUTES]` and `/fill X1 Y1 X2 Y2 COLOR` (admin): the
/// text mode's words, so the server's parser gives the same errors.
fn parse_bulk(word: &str, args: &str) -> Result<ChatInput, String> {
    let usage = if word == "rollback" {
        "usage: /rollback NAME [MINUTES]"
    } else {
        "usage: /fill X1 Y1 X2 Y2 COLOR"
    };
    let line = format!("{} {}", word.to_ascii_uppercase(), args.trim());
    match crate::protocol::text::parse_line(line.as_bytes()) {
        Ok(cmd @ (Command::Rollback { .. } | Command::Fill { .. })) => {
            let what = format!("/{word} {}", args.trim());
            Ok(ChatInput::Send(cmd, Sent::Bulk { what }))
        }
        Ok(_) => Err(usage.into()),
        Err(e) => Err(format!("{usage} ({})", e.message)),
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

/// A stamp for `unix_ms` in local time (`utc_offset` seconds east):
/// `14:05` today (by `now_ms`), `11-30 14:05` on another day.
pub fn format_stamp(unix_ms: u64, now_ms: u64, utc_offset: i32) -> String {
    let local = |ms: u64| (ms / 1000) as i64 + i64::from(utc_offset);
    let (secs, now) = (local(unix_ms), local(now_ms));
    let (day, today) = (secs.div_euclid(86_400), now.div_euclid(86_400));
    let minutes = secs.rem_euclid(86_400) / 60;
    let time = format!("{:02}:{:02}", minutes / 60, minutes % 60);
    if day == today {
        return time;
    }
    let (_, month, d) = civil_from_days(day);
    format!("{month:02}-{d:02} {time}")
}

/// The calendar date of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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
        let mut chat = ChatPane {
            timestamps: false,
            ..ChatPane::default()
        };
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
    fn stamps_read_local_time_and_the_date_on_another_day() {
        // 2023-11-14 22:13:20 UTC.
        let t = 1_700_000_000_000;
        assert_eq!(format_stamp(t, t, 0), "22:13");
        assert_eq!(format_stamp(t, t, 3600), "23:13");
        assert_eq!(format_stamp(t, t + 86_400_000, 0), "11-14 22:13");
        assert_eq!(format_stamp(t, t, 7200), "00:13", "the next day, local");
    }

    #[test]
    fn tab_completes_names_then_cycles_and_commands_at_the_start() {
        let names: Vec<String> = ["bob", "Bobby", "carol", "cron*"]
            .map(String::from)
            .to_vec();
        let mut chat = ChatPane::default();
        let tab = KeyEvent::new(
            ratatui::crossterm::event::KeyCode::Tab,
            ratatui::crossterm::event::KeyModifiers::NONE,
        );
        chat.input = Input::new("bo".into());
        chat.on_key(tab, None, &names, &mut Vec::new());
        assert_eq!(chat.input.value(), "bob: ");
        chat.on_key(tab, None, &names, &mut Vec::new());
        assert_eq!(chat.input.value(), "Bobby: ");
        chat.on_key(tab, None, &names, &mut Vec::new());
        assert_eq!(chat.input.value(), "bob: ", "round again");
        chat.input = Input::new("/tell cr".into());
        chat.completion = None;
        chat.on_key(tab, None, &names, &mut Vec::new());
        assert_eq!(
            chat.input.value(),
            "/tell cron ",
            "a quiet name without its *"
        );
        chat.input = Input::new("/te".into());
        chat.on_key(tab, None, &names, &mut Vec::new());
        assert_eq!(chat.input.value(), "/tell ");
    }

    #[test]
    fn while_scrolled_back_new_lines_do_not_move_the_view_and_are_counted() {
        let mut chat = ChatPane {
            view: (40, 5),
            me: Some("alice".into()),
            ..ChatPane::default()
        };
        for i in 0..20 {
            chat.push(msg(&format!("line {i}")));
        }
        chat.scroll = 6;
        chat.push(msg("hello alice"));
        chat.push(ChatLine::Joined("dan".into()));
        assert_eq!(chat.scroll, 8, "the same rows stay in view");
        assert_eq!((chat.unread, chat.unread_mentions), (2, 1));
        chat.follow();
        assert_eq!((chat.scroll, chat.unread), (0, 0));
    }

    #[test]
    fn the_wheel_scrolls_by_wrapped_rows_and_stops_at_the_top() {
        let mut chat = ChatPane {
            timestamps: false,
            ..ChatPane::default()
        };
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
