//! The client's state and how every input changes it.
//!
//! Pure: no sockets, no terminal, no clock (callers pass `now`). Keys, mouse,
//! resizes and network reports go in through [`App::update`]; what should
//! happen in the world comes out as [`Intent`]s for the loop to carry out.
//! Tests drive it with plain values and read the public fields.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ratatui::crossterm::event::{
    Event as TermEvent, KeyEvent, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::{Position, Rect};
use tui_input::Input;
use tui_input::backend::crossterm::EventHandler;

use super::color::ColorMode;
use super::event::AppEvent;
use super::keys::{self, Action};
use super::net::{ClientEvent, Login, LoginError, RequestError};
use super::ui;
use crate::protocol::{
    Command, ErrorCode, Event, PALETTE, Pixel, Placement, Reply, Snapshot, Welcome, validate_name,
};

/// Chat lines kept for scrolling back.
pub const CHAT_LINES: usize = 1000;
/// Pixels kept while offline (or unanswered) before new ones are refused.
pub const MAX_QUEUED_PIXELS: usize = 1000;
/// How long a notice (an error from the server, a hint) stays up.
pub const NOTICE_TIME: Duration = Duration::from_secs(5);
/// Chat lines the mouse wheel scrolls.
const WHEEL_LINES: usize = 3;

/// The canvas as this client knows it: the last snapshot plus every pixel
/// event since, in seq order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canvas {
    /// Which canvas; seqs of another id never apply.
    pub id: u64,
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Seq of the last pixel applied.
    pub seq: u64,
    pixels: Vec<u8>,
}

/// What [`Canvas::apply`] did with a pixel event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The next seq: applied.
    Next,
    /// Already part of the canvas (a replay or the snapshot's past): ignored.
    Stale,
    /// Applied, but seqs were skipped: the canvas may be missing pixels.
    Gap,
    /// Outside the canvas: ignored.
    Outside,
}

impl Canvas {
    /// The canvas of a snapshot.
    pub fn from_snapshot(s: &Snapshot) -> Self {
        Self {
            id: s.canvas_id,
            width: s.width,
            height: s.height,
            seq: s.seq,
            pixels: s.pixels.clone(),
        }
    }

    /// Palette index at `(x, y)`, if inside.
    pub fn get(&self, x: u16, y: u16) -> Option<u8> {
        (x < self.width && y < self.height)
            .then(|| self.pixels[usize::from(y) * usize::from(self.width) + usize::from(x)])
    }

    /// Applies a pixel event unless the canvas already has it.
    pub fn apply(&mut self, p: &Pixel) -> Applied {
        if p.seq <= self.seq {
            return Applied::Stale;
        }
        if p.x >= self.width || p.y >= self.height {
            return Applied::Outside;
        }
        let gap = p.seq != self.seq + 1;
        self.seq = p.seq;
        self.pixels[usize::from(p.y) * usize::from(self.width) + usize::from(p.x)] = p.color;
        if gap { Applied::Gap } else { Applied::Next }
    }
}

/// Which screen is up.
#[derive(Debug, Clone)]
pub enum Screen {
    /// Asking for a name.
    Login(LoginForm),
    /// The canvas, chat and status.
    Main,
}

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

/// Where keys go on the main screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    /// Drawing: the key table's [`keys::DRAWING`] rows.
    Canvas,
    /// Typing in the chat input.
    Chat,
}

/// What is drawn over the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    /// Nothing.
    None,
    /// The key help.
    Help,
}

/// The connection as the status bar shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// No connection wanted yet (no name).
    Idle,
    /// Connecting and joining.
    Connecting {
        /// Attempts since the last success.
        attempt: u32,
    },
    /// Joined and live.
    Online,
    /// Lost or refused; the next attempt is at `at`.
    Retrying {
        /// When the next attempt starts.
        at: Instant,
        /// What went wrong.
        reason: String,
    },
    /// Sent away by an admin (kicked or banned): no reconnecting until the
    /// user asks ([`keys::DRAWING`]'s `r`).
    Evicted {
        /// What happened, for the status bar.
        reason: String,
    },
    /// Given up.
    Offline {
        /// Why.
        reason: String,
    },
}

/// One palette colour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swatch {
    /// sRGB value.
    pub rgb: [u8; 3],
    /// The colour's name.
    pub name: String,
}

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

/// A short message in the status bar that goes away by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The message.
    pub text: String,
    /// When it goes away.
    pub until: Instant,
    /// How it is drawn.
    pub kind: NoticeKind,
}

/// What a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// Something failed or needs attention.
    Error,
    /// An answer the user asked for.
    Info,
}

/// Pixels are refused until `until`: the server answered `cooldown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cooldown {
    /// When placing works again.
    pub until: Instant,
}

/// The wall clock at one instant, so "how long ago" can be worked out
/// from the monotonic time passed to [`App::update`]. Read once at start;
/// tests set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    /// The instant.
    pub at: Instant,
    /// Unix time at `at`, in milliseconds.
    pub unix_ms: u64,
}

impl WallClock {
    /// The system clock now.
    pub fn now() -> Self {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Self {
            at: Instant::now(),
            unix_ms,
        }
    }

    /// Unix milliseconds at `now`.
    pub fn unix_ms(&self, now: Instant) -> u64 {
        match now.checked_duration_since(self.at) {
            Some(d) => self.unix_ms.saturating_add(d.as_millis() as u64),
            None => self
                .unix_ms
                .saturating_sub(self.at.duration_since(now).as_millis() as u64),
        }
    }
}

/// A pixel placed but not yet confirmed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingPixel {
    /// Column.
    pub x: u16,
    /// Row.
    pub y: u16,
    /// Palette index.
    pub color: u8,
    /// The request it went out with; `None` while queued offline.
    pub tag: Option<u64>,
}

/// What the loop should do for the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Join with this login.
    Login(Login),
    /// Send a command; its reply comes back with `tag`.
    Send {
        /// Matches the reply to the command.
        tag: u64,
        /// The command.
        cmd: Command,
    },
    /// Leave.
    Quit,
}

/// What a tag was sent for, to make sense of its reply.
#[derive(Debug, Clone)]
enum Sent {
    Pixel,
    Say {
        line: String,
    },
    Tell {
        to: String,
        text: String,
        line: String,
    },
    Who,
    Canvas,
    Whose {
        x: u16,
        y: u16,
    },
    Kick {
        name: String,
    },
    Ban {
        name: String,
    },
}

/// The whole client state; see the module docs.
#[derive(Debug)]
pub struct App {
    /// Server address, for the status bar.
    pub server: String,
    /// Screen shown.
    pub screen: Screen,
    /// Connection state.
    pub link: Link,
    /// Our name once joined.
    pub me: Option<String>,
    /// The canvas, once a snapshot arrived; kept while offline.
    pub canvas: Option<Canvas>,
    /// The server's palette.
    pub palette: Vec<Swatch>,
    /// Selected palette index.
    pub color: u8,
    /// Cursor pixel.
    pub cursor: (u16, u16),
    /// Top-left pixel of the canvas view (the row is always even, so a
    /// cell's two pixels never change halves while scrolling).
    pub view: (u16, u16),
    /// Where keys go.
    pub focus: Focus,
    /// What is drawn on top.
    pub overlay: Overlay,
    /// The chat input line.
    pub input: Input,
    /// Chat scrollback, oldest first.
    pub chat: VecDeque<ChatLine>,
    /// Rows scrolled back from the newest chat line (0: following).
    pub chat_scroll: usize,
    /// Users online, sorted ignoring case (as many as the server named).
    pub users: Vec<String>,
    /// Users online the server did not name: it lists at most
    /// `MAX_LISTED_USERS` in `WELCOME` and `WHO`.
    pub unlisted: u32,
    /// Last keepalive round trip.
    pub rtt: Option<Duration>,
    /// Current status-bar notice.
    pub notice: Option<Notice>,
    /// Pixels not yet confirmed, oldest first; drawn over the canvas.
    pub pending: Vec<PendingPixel>,
    /// Terminal size, columns and rows.
    pub size: (u16, u16),
    /// How colours reach the terminal.
    pub color_mode: ColorMode,
    /// The time of the latest update, for countdowns drawn on screen.
    pub now: Instant,
    /// Maps `now` to Unix time, for how long ago a pixel was placed.
    pub wall: WallClock,
    /// Placing is refused until then (the server's `cooldown`).
    pub cooldown: Option<Cooldown>,
    in_flight: HashMap<u64, Sent>,
    next_tag: u64,
    intents: Vec<Intent>,
    /// A `CANVAS` to repair a seq gap is on its way.
    resyncing: bool,
    /// Joined at least once (later joins are reconnects).
    joined_before: bool,
    /// The name to join with at start, from `--name`.
    initial_name: Option<String>,
    /// The password to join with: `--password`, or the one typed last.
    password: Option<String>,
    /// The login sent last, to fill the form when it is refused and to
    /// reconnect with.
    login: Option<Login>,
}

impl App {
    /// A client for `server`; with a `name` it joins at once, without it
    /// starts on the login screen.
    pub fn new(server: impl Into<String>, name: Option<String>, color_mode: ColorMode) -> Self {
        Self {
            server: server.into(),
            screen: match &name {
                Some(_) => Screen::Main,
                None => Screen::Login(LoginForm::default()),
            },
            link: Link::Idle,
            me: None,
            canvas: None,
            palette: PALETTE
                .iter()
                .map(|c| Swatch {
                    rgb: c.rgb,
                    name: c.name.to_string(),
                })
                .collect(),
            // Pixorama starts on a dark grey; black reads well on white.
            color: 3,
            cursor: (0, 0),
            view: (0, 0),
            focus: Focus::Canvas,
            overlay: Overlay::None,
            input: Input::default(),
            chat: VecDeque::new(),
            chat_scroll: 0,
            users: Vec::new(),
            unlisted: 0,
            rtt: None,
            notice: None,
            pending: Vec::new(),
            size: (80, 24),
            color_mode,
            now: Instant::now(),
            wall: WallClock::now(),
            cooldown: None,
            in_flight: HashMap::new(),
            next_tag: 1,
            intents: Vec::new(),
            resyncing: false,
            joined_before: false,
            initial_name: name,
            password: None,
            login: None,
        }
    }

    /// The same client with a password (`--password`) for every login.
    pub fn with_password(mut self, password: Option<String>) -> Self {
        self.password = password.filter(|p| !p.is_empty());
        self
    }

    /// The intents to start with: joining with the `--name` given, or the
    /// login screen showing why that name cannot work.
    pub fn start(&mut self) -> Vec<Intent> {
        if let Some(name) = self.initial_name.take() {
            let login = Login::new(name).with_password(self.password.clone());
            self.submit_login(login);
        }
        std::mem::take(&mut self.intents)
    }

    /// Applies one event at time `now` and returns what to do about it.
    pub fn update(&mut self, event: AppEvent, now: Instant) -> Vec<Intent> {
        self.now = now;
        match event {
            AppEvent::Key(key) => self.on_key(key, now),
            AppEvent::Mouse(mouse) => self.on_mouse(mouse, now),
            AppEvent::Resize { width, height } => {
                self.size = (width, height);
                self.follow_cursor();
            }
            AppEvent::Net(event) => self.on_net(event, now),
            AppEvent::Tick => {}
            AppEvent::Quit => self.intents.push(Intent::Quit),
        }
        if self.notice.as_ref().is_some_and(|n| n.until <= now) {
            self.notice = None;
        }
        if self.cooldown.is_some_and(|c| c.until <= now) {
            self.cooldown = None;
        }
        std::mem::take(&mut self.intents)
    }

    /// The terminal area.
    pub fn area(&self) -> Rect {
        Rect::new(0, 0, self.size.0, self.size.1)
    }

    /// Canvas width and height, once known.
    pub fn canvas_size(&self) -> Option<(u16, u16)> {
        self.canvas.as_ref().map(|c| (c.width, c.height))
    }

    /// The colour of palette index `i` (black for an index the palette
    /// lacks, which a server never sends).
    pub fn rgb(&self, i: u8) -> [u8; 3] {
        self.palette.get(usize::from(i)).map_or([0; 3], |s| s.rgb)
    }

    /// The name of palette index `i`.
    pub fn color_name(&self, i: u8) -> &str {
        self.palette
            .get(usize::from(i))
            .map_or("?", |s| s.name.as_str())
    }

    /// Pixels placed while offline and not yet sent.
    pub fn queued(&self) -> usize {
        self.pending.iter().filter(|p| p.tag.is_none()).count()
    }

    /// How long placing is still refused, if it is.
    pub fn cooldown_left(&self) -> Option<Duration> {
        self.cooldown
            .map(|c| c.until.saturating_duration_since(self.now))
            .filter(|left| !left.is_zero())
    }

    /// True while something on screen changes faster than once a second
    /// (the cooldown countdown), so the loop should redraw more often.
    pub fn animating(&self) -> bool {
        self.cooldown.is_some()
    }

    fn notify(&mut self, now: Instant, text: impl Into<String>) {
        self.notice = Some(Notice {
            text: text.into(),
            until: now + NOTICE_TIME,
            kind: NoticeKind::Error,
        });
    }

    fn inform(&mut self, now: Instant, text: impl Into<String>) {
        self.notice = Some(Notice {
            text: text.into(),
            until: now + NOTICE_TIME,
            kind: NoticeKind::Info,
        });
    }

    fn say(&mut self, line: ChatLine) {
        if self.chat.len() == CHAT_LINES {
            self.chat.pop_front();
        }
        self.chat.push_back(line);
    }

    fn send(&mut self, cmd: Command, sent: Sent) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.in_flight.insert(tag, sent);
        self.intents.push(Intent::Send { tag, cmd });
        tag
    }

    // ---- keys ----

    fn on_key(&mut self, key: KeyEvent, now: Instant) {
        if keys::lookup(keys::ANYWHERE, &key) == Some(Action::Quit) {
            self.intents.push(Intent::Quit);
            return;
        }
        if self.overlay == Overlay::Help {
            // Any key closes the help; it does nothing else.
            self.overlay = Overlay::None;
            return;
        }
        if let Screen::Login(form) = &mut self.screen {
            match keys::lookup(keys::LOGIN, &key) {
                Some(Action::Send) => self.submit_form(),
                Some(Action::NextField) if form.password.is_some() => {
                    form.field = match form.field {
                        Field::Name => Field::Password,
                        Field::Password => Field::Name,
                    };
                }
                Some(Action::Quit) => self.intents.push(Intent::Quit),
                _ => {
                    let input = match (form.field, &mut form.password) {
                        (Field::Password, Some(password)) => password,
                        _ => &mut form.name,
                    };
                    input.handle_event(&TermEvent::Key(key));
                }
            }
            return;
        }
        match self.focus {
            Focus::Chat => match keys::lookup(keys::CHATTING, &key) {
                Some(Action::Send) => self.submit_chat(now),
                Some(Action::Back) => self.focus = Focus::Canvas,
                Some(action @ (Action::ScrollUp | Action::ScrollDown)) => self.scroll(action),
                _ => {
                    self.input.handle_event(&TermEvent::Key(key));
                }
            },
            Focus::Canvas => {
                if let Some(action) = keys::lookup(keys::DRAWING, &key) {
                    self.act(action, now);
                }
            }
        }
    }

    fn act(&mut self, action: Action, now: Instant) {
        match action {
            Action::Move { dx, dy } => self.move_cursor(dx, dy),
            Action::Place => self.place(self.cursor, now),
            Action::PrevColor => self.step_color(-1),
            Action::NextColor => self.step_color(1),
            Action::PickColor(i) => {
                if usize::from(i) < self.palette.len() {
                    self.color = i;
                }
            }
            Action::Chat => self.focus = Focus::Chat,
            Action::Command => {
                self.focus = Focus::Chat;
                if self.input.value().is_empty() {
                    self.input = Input::new("/".into());
                }
            }
            Action::ScrollUp | Action::ScrollDown => self.scroll(action),
            Action::Follow => self.chat_scroll = 0,
            Action::Help => self.overlay = Overlay::Help,
            Action::Quit => self.intents.push(Intent::Quit),
            Action::Whose => self.ask_whose(now),
            Action::Reconnect => self.reconnect(now),
            Action::Send | Action::Back | Action::NextField => {}
        }
    }

    fn step_color(&mut self, step: i32) {
        let n = self.palette.len().max(1) as i32;
        self.color = (i32::from(self.color) + step).rem_euclid(n) as u8;
    }

    fn move_cursor(&mut self, dx: i32, dy: i32) {
        let Some((w, h)) = self.canvas_size() else {
            return;
        };
        let clamp =
            |v: u16, d: i32, len: u16| (i32::from(v) + d).clamp(0, i32::from(len) - 1) as u16;
        self.cursor = (clamp(self.cursor.0, dx, w), clamp(self.cursor.1, dy, h));
        self.follow_cursor();
    }

    /// Scrolls the view so the cursor is inside it.
    fn follow_cursor(&mut self) {
        if let Some(areas) = ui::layout(self.area(), self.canvas_size(), self.users.len()) {
            self.view = ui::view(areas.canvas_inner, self);
        }
    }

    fn scroll(&mut self, action: Action) {
        let Some(areas) = ui::layout(self.area(), self.canvas_size(), self.users.len()) else {
            return;
        };
        let page = usize::from(areas.messages.height / 2).max(1);
        self.scroll_by(action, page, areas.messages.width);
    }

    fn scroll_by(&mut self, action: Action, rows: usize, width: u16) {
        let most = ui::chat_rows(self, width).saturating_sub(1);
        self.chat_scroll = match action {
            Action::ScrollUp => (self.chat_scroll + rows).min(most),
            _ => self.chat_scroll.saturating_sub(rows),
        };
    }

    /// Enter on the login screen: from a good name to an empty password
    /// field first, else join with what the form holds.
    fn submit_form(&mut self) {
        let Screen::Login(form) = &mut self.screen else {
            return;
        };
        let name = form.name.value().trim().to_string();
        let typed = form.password.as_ref().map(|p| p.value().to_string());
        if validate_name(&name).is_ok() && typed.as_deref() == Some("") {
            if form.field == Field::Password {
                form.error = Some("type the server's password".into());
            }
            form.field = Field::Password;
            return;
        }
        if typed.is_some() {
            self.password = typed;
        }
        let login = Login::new(name).with_password(self.password.clone());
        self.submit_login(login);
    }

    fn submit_login(&mut self, login: Login) {
        match validate_name(&login.name) {
            Ok(()) => {
                if let Screen::Login(form) = &mut self.screen {
                    form.error = None;
                }
                self.login = Some(login.clone());
                self.intents.push(Intent::Login(login));
            }
            Err(e) => self.show_login(login.name.clone(), Field::Name, e.message),
        }
    }

    /// The server refused the login sent last: back to the form, at the
    /// field to fix.
    fn login_rejected(&mut self, e: LoginError) {
        let name = self
            .login
            .as_ref()
            .map_or(String::new(), |l| l.name.clone());
        match e {
            LoginError::PasswordRequired(_) => {
                self.password = None;
                self.show_login(name, Field::Password, "this server needs a password".into());
            }
            LoginError::WrongPassword(_) => {
                self.password = None;
                self.show_login(name, Field::Password, "wrong password".into());
            }
            LoginError::Name(e) => self.show_login(name, Field::Name, e.message),
        }
    }

    /// Opens the login screen on `field`, saying `why`. The password
    /// field shows when the server asked for one or we have one.
    fn show_login(&mut self, name: String, field: Field, why: String) {
        let password = match field {
            Field::Password => Some(Input::default()),
            Field::Name => self.password.clone().map(Input::new),
        };
        self.screen = Screen::Login(LoginForm {
            name: Input::new(name),
            password,
            field,
            error: Some(why),
        });
        self.link = Link::Idle;
    }

    /// Users online, named or not.
    pub fn online(&self) -> usize {
        self.users.len() + self.unlisted as usize
    }

    /// `r`: joins again at once with the last login, after an admin's kick
    /// or instead of waiting for the next attempt.
    fn reconnect(&mut self, now: Instant) {
        match (&self.link, &self.login) {
            (Link::Evicted { .. } | Link::Retrying { .. }, Some(login)) => {
                self.intents.push(Intent::Login(login.clone()));
                self.link = Link::Connecting { attempt: 1 };
            }
            (Link::Online, _) => self.inform(now, "connected already"),
            _ => {}
        }
    }

    /// `w`: asks the server who placed the pixel under the cursor.
    fn ask_whose(&mut self, now: Instant) {
        if self.canvas.is_none() {
            return;
        }
        if self.link != Link::Online {
            self.notify(now, "offline: cannot ask who placed it");
            return;
        }
        let (x, y) = self.cursor;
        let cmd = Command::Whose {
            x: x.into(),
            y: y.into(),
        };
        self.send(cmd, Sent::Whose { x, y });
    }

    /// Says who placed `(x, y)` and how long ago, in the chat and the
    /// status bar.
    fn show_whose(&mut self, x: u16, y: u16, placement: Option<Placement>, now: Instant) {
        let text = match placement {
            Some(p) => {
                let ago = self.wall.unix_ms(now).saturating_sub(p.unix_ms);
                format!(
                    "({x},{y}) placed by {} {}, seq {}",
                    p.name,
                    format_ago(ago),
                    p.seq
                )
            }
            None => format!("({x},{y}) nobody has placed this pixel"),
        };
        self.say(ChatLine::Info(text.clone()));
        self.inform(now, text);
    }

    /// Places the selected colour at `at`: sent at once when online,
    /// queued (and drawn as queued) when not.
    fn place(&mut self, at: (u16, u16), now: Instant) {
        if self.canvas.is_none() {
            self.notify(now, "no canvas yet: wait for the connection");
            return;
        }
        if self.cooldown_left().is_some() {
            // The server would refuse it: say so rather than send it. The
            // status bar shows how long is left, counting down.
            self.notify(now, "not placed: wait for the cooldown");
            return;
        }
        if self.pending.len() >= MAX_QUEUED_PIXELS {
            self.notify(now, "too many pixels waiting: this one was not placed");
            return;
        }
        let mut pixel = PendingPixel {
            x: at.0,
            y: at.1,
            color: self.color,
            tag: None,
        };
        if self.link == Link::Online {
            pixel.tag = Some(self.send_pixel(&pixel));
        } else {
            self.notify(now, "offline: the pixel is queued and sent on reconnect");
        }
        self.pending.push(pixel);
    }

    fn send_pixel(&mut self, p: &PendingPixel) -> u64 {
        let cmd = Command::Set {
            x: p.x.into(),
            y: p.y.into(),
            color: p.color.into(),
        };
        self.send(cmd, Sent::Pixel)
    }

    fn submit_chat(&mut self, now: Instant) {
        let line = self.input.value().to_string();
        if line.trim().is_empty() {
            self.input.reset();
            self.focus = Focus::Canvas;
            return;
        }
        let (cmd, sent) = match parse_chat(&line) {
            Ok(ChatInput::Local(action)) => {
                self.input.reset();
                self.act(action, now);
                return;
            }
            Ok(ChatInput::Send(cmd, sent)) => (cmd, sent),
            Err(why) => {
                self.say(ChatLine::Error(why));
                return;
            }
        };
        if self.link != Link::Online {
            // Chat is live talk: rather than send it late, keep the text
            // for the user to send when the connection is back.
            self.notify(now, "offline: not sent (the text stays in the input)");
            return;
        }
        self.input.reset();
        self.chat_scroll = 0;
        self.send(cmd, sent);
    }

    // ---- mouse ----

    fn on_mouse(&mut self, mouse: MouseEvent, now: Instant) {
        if self.overlay == Overlay::Help {
            if matches!(mouse.kind, MouseEventKind::Down(_)) {
                self.overlay = Overlay::None;
            }
            return;
        }
        if !matches!(self.screen, Screen::Main) {
            return;
        }
        let Some(areas) = ui::layout(self.area(), self.canvas_size(), self.users.len()) else {
            return;
        };
        let at = Position::new(mouse.column, mouse.row);
        match mouse.kind {
            MouseEventKind::Down(MouseButton::Left) => {
                if let Some(pixel) = self.pixel_at(areas.canvas_inner, at) {
                    self.focus = Focus::Canvas;
                    self.cursor = pixel;
                    self.place(pixel, now);
                } else if let Some(i) = ui::palette_at(areas.palette, self.palette.len(), at) {
                    self.color = i;
                } else if areas.chat.contains(at) {
                    self.focus = Focus::Chat;
                }
            }
            MouseEventKind::ScrollUp if areas.chat.contains(at) => {
                self.scroll_by(Action::ScrollUp, WHEEL_LINES, areas.messages.width);
            }
            MouseEventKind::ScrollDown if areas.chat.contains(at) => {
                self.scroll_by(Action::ScrollDown, WHEEL_LINES, areas.messages.width);
            }
            _ => {}
        }
    }

    /// The pixel a click at `at` means. A cell shows two pixels and a
    /// click cannot tell which half was meant: it takes the upper one,
    /// and the lower one when the cursor is already on the upper one, so
    /// a second click on the same cell reaches it.
    fn pixel_at(&self, inner: Rect, at: Position) -> Option<(u16, u16)> {
        let (w, h) = self.canvas_size()?;
        if !inner.contains(at) {
            return None;
        }
        let (vx, vy) = ui::view(inner, self);
        let x = vx + (at.x - inner.x);
        let top = vy + 2 * (at.y - inner.y);
        if x >= w || top >= h {
            return None;
        }
        let y = if self.cursor == (x, top) && top + 1 < h {
            top + 1
        } else {
            top
        };
        Some((x, y))
    }

    // ---- network ----

    fn on_net(&mut self, event: ClientEvent, now: Instant) {
        match event {
            ClientEvent::Connecting { attempt } => self.link = Link::Connecting { attempt },
            ClientEvent::Joined { welcome, snapshot } => self.on_joined(welcome, snapshot, now),
            ClientEvent::LoginRejected(e) => self.login_rejected(e),
            ClientEvent::Evicted { code, text } => self.evicted(code, text),
            ClientEvent::Event(event) => self.on_event(event, now),
            ClientEvent::Reply { tag, result } => self.on_reply(tag, result, now),
            ClientEvent::Rtt(rtt) => self.rtt = Some(rtt),
            ClientEvent::Disconnected { reason, retry_in } => {
                if self.link == Link::Online {
                    self.say(ChatLine::Error(format!("connection lost: {reason}")));
                }
                self.users.clear();
                self.rtt = None;
                self.link = Link::Retrying {
                    at: now + retry_in,
                    reason,
                };
            }
            ClientEvent::Stopped { reason } => {
                self.say(ChatLine::Error(format!("gave up: {reason}")));
                self.link = Link::Offline { reason };
            }
        }
    }

    /// An admin sent us away: offline until the user presses `r`.
    fn evicted(&mut self, code: ErrorCode, text: String) {
        let (reason, line) = match code {
            ErrorCode::Banned => (
                "banned from this server".to_string(),
                format!("banned: {text}"),
            ),
            _ => (
                "kicked by an admin · r reconnects".to_string(),
                format!("kicked: {text}; press r to reconnect"),
            ),
        };
        self.say(ChatLine::Error(line));
        self.users.clear();
        self.rtt = None;
        self.link = Link::Evicted { reason };
    }

    fn on_joined(
        &mut self,
        welcome: Welcome,
        snapshot: Option<std::sync::Arc<Snapshot>>,
        now: Instant,
    ) {
        self.screen = Screen::Main;
        self.link = Link::Online;
        self.unlisted = welcome.online.saturating_sub(welcome.users.len() as u32);
        self.users = welcome.users;
        self.users.sort_by_key(|n| n.to_ascii_lowercase());
        if !welcome.palette.is_empty() {
            self.palette = welcome
                .palette
                .into_iter()
                .map(|(rgb, name)| Swatch { rgb, name })
                .collect();
            self.color = self.color.min(self.palette.len() as u8 - 1);
        }
        let verb = if self.joined_before {
            "reconnected"
        } else {
            "joined"
        };
        match snapshot {
            Some(s) => {
                let replaced = self.canvas.as_ref().is_some_and(|c| c.id != s.canvas_id);
                self.canvas = Some(Canvas::from_snapshot(&s));
                self.say(ChatLine::Info(format!(
                    "{verb} as {} (canvas {}x{}, seq {})",
                    welcome.name, s.width, s.height, s.seq
                )));
                if replaced {
                    self.say(ChatLine::Info(
                        "the server has a new canvas (it restarted without its data)".into(),
                    ));
                }
            }
            None => self.say(ChatLine::Info(format!(
                "{verb} as {} (resumed up to seq {})",
                welcome.name, welcome.seq
            ))),
        }
        self.me = Some(welcome.name);
        self.joined_before = true;
        self.resyncing = false;
        if let Some((w, h)) = self.canvas_size() {
            self.cursor = (self.cursor.0.min(w - 1), self.cursor.1.min(h - 1));
        }
        self.follow_cursor();
        self.flush_queue(now);
    }

    /// Sends the pixels placed while offline.
    fn flush_queue(&mut self, now: Instant) {
        let mut sent = 0;
        for i in 0..self.pending.len() {
            if self.pending[i].tag.is_none() {
                let pixel = self.pending[i];
                self.pending[i].tag = Some(self.send_pixel(&pixel));
                sent += 1;
            }
        }
        if sent > 0 {
            self.notify(now, format!("sending {sent} queued pixel(s)"));
        }
    }

    fn on_event(&mut self, event: Event, now: Instant) {
        match event {
            Event::Pixel(p) => {
                let Some(canvas) = &mut self.canvas else {
                    return;
                };
                if canvas.apply(&p) == Applied::Gap && !self.resyncing {
                    // The server promises no gaps; if one shows, the canvas
                    // is wrong, and a fresh snapshot is the cure.
                    self.resyncing = true;
                    self.send(Command::Canvas, Sent::Canvas);
                }
            }
            Event::Joined { name } => {
                if !self.users.iter().any(|u| u.eq_ignore_ascii_case(&name)) {
                    self.users.push(name.to_string());
                    self.users.sort_by_key(|n| n.to_ascii_lowercase());
                }
                self.say(ChatLine::Joined(name.to_string()));
            }
            Event::Left { name } => {
                let before = self.users.len();
                self.users.retain(|u| !u.eq_ignore_ascii_case(&name));
                if self.users.len() == before {
                    self.unlisted = self.unlisted.saturating_sub(1);
                }
                self.say(ChatLine::Left(name.to_string()));
            }
            Event::Msg { from, text } => self.say(ChatLine::Msg {
                from: from.to_string(),
                text: text.to_string(),
            }),
            Event::Dm { from, text } => self.say(ChatLine::DmIn {
                from: from.to_string(),
                text: text.to_string(),
            }),
            Event::History { from, text, .. } => {
                // Every (re)join replays the latest chat; after a reconnect
                // most of it is already on screen.
                let seen = self.chat.iter().any(|l| {
                    matches!(l, ChatLine::Msg { from: f, text: t } | ChatLine::History { from: f, text: t }
                        if **f == *from && **t == *text)
                });
                if !seen {
                    self.say(ChatLine::History {
                        from: from.to_string(),
                        text: text.to_string(),
                    });
                }
            }
            // The client pings every 15 s, which is what keeps the server's
            // idle timer happy; nothing else to do.
            Event::Keepalive => {}
            // An admin's kick or ban: `Evicted` follows and says it.
            Event::Bye {
                code: ErrorCode::Kicked | ErrorCode::Banned,
                ..
            } => {}
            Event::Bye { code, text } => {
                self.notify(now, format!("server: {text} ({code})"));
            }
        }
    }

    fn on_reply(&mut self, tag: u64, result: Result<Reply, RequestError>, now: Instant) {
        let Some(sent) = self.in_flight.remove(&tag) else {
            return;
        };
        let reply = match result {
            Ok(reply) => reply,
            Err(e) => return self.unanswered(tag, sent, e, now),
        };
        match (sent, reply) {
            (Sent::Pixel, Reply::Error(e)) => {
                if let Some(i) = self.pending.iter().position(|p| p.tag == Some(tag)) {
                    let p = self.pending.remove(i);
                    match cooldown_ms(&e) {
                        // The status bar counts it down; the notice says
                        // which pixel it cost.
                        Some(ms) => {
                            let until = now + Duration::from_millis(ms);
                            if self.cooldown.is_none_or(|c| c.until < until) {
                                self.cooldown = Some(Cooldown { until });
                            }
                            self.notify(now, format!("pixel ({},{}) not placed", p.x, p.y));
                        }
                        None => {
                            self.notify(now, format!("pixel ({},{}) not placed: {e}", p.x, p.y))
                        }
                    }
                }
            }
            (Sent::Pixel, _) => self.pending.retain(|p| p.tag != Some(tag)),
            (Sent::Say { .. }, Reply::Ok) => {}
            (Sent::Tell { to, text, .. }, Reply::Ok) => self.say(ChatLine::DmOut { to, text }),
            (Sent::Who, Reply::Who { online, users }) => {
                let more = match online.saturating_sub(users.len() as u32) {
                    0 => String::new(),
                    n => format!(" and {n} more"),
                };
                self.say(ChatLine::Info(format!(
                    "online ({online}): {}{more}",
                    users.join(", ")
                )));
                self.unlisted = online.saturating_sub(users.len() as u32);
                self.users = users;
                self.users.sort_by_key(|n| n.to_ascii_lowercase());
            }
            (Sent::Whose { x, y }, Reply::Whose(placement)) => {
                self.show_whose(x, y, placement, now);
            }
            (Sent::Kick { name }, Reply::Ok) => {
                self.say(ChatLine::Info(format!("kicked {name}")));
            }
            (Sent::Ban { name }, Reply::Ok) => {
                self.say(ChatLine::Info(format!(
                    "banned {name} (until the server restarts)"
                )));
            }
            (Sent::Canvas, Reply::Canvas(s)) => {
                self.resyncing = false;
                if self.canvas.as_ref().is_none_or(|c| c.id == s.canvas_id) {
                    self.canvas = Some(Canvas::from_snapshot(&s));
                }
            }
            (sent, Reply::Error(e)) => {
                match sent {
                    Sent::Canvas => self.resyncing = false,
                    Sent::Say { line } | Sent::Tell { line, .. } => self.restore_line(line),
                    Sent::Pixel
                    | Sent::Who
                    | Sent::Whose { .. }
                    | Sent::Kick { .. }
                    | Sent::Ban { .. } => {}
                }
                self.say(ChatLine::Error(e.to_string()));
                self.notify(now, e.to_string());
            }
            (_, other) => tracing::debug!(?other, "unexpected reply"),
        }
    }

    /// A command that got no answer: pixels wait for the next connection,
    /// chat goes back into the input so nothing typed is lost.
    fn unanswered(&mut self, tag: u64, sent: Sent, why: RequestError, now: Instant) {
        match sent {
            Sent::Pixel => {
                for p in self.pending.iter_mut().filter(|p| p.tag == Some(tag)) {
                    p.tag = None;
                }
                if self.link == Link::Online {
                    // Lost although we think we are online: the drop report
                    // is on its way; the next join sends it.
                    self.notify(now, "pixel queued: the connection dropped");
                }
            }
            Sent::Say { line } | Sent::Tell { line, .. } => {
                self.restore_line(line);
                self.notify(
                    now,
                    format!("not sent ({why}): the text is back in the input"),
                );
            }
            Sent::Canvas => self.resyncing = false,
            Sent::Whose { .. } | Sent::Kick { .. } | Sent::Ban { .. } => {
                self.notify(now, format!("no answer: {why}"));
            }
            Sent::Who => {}
        }
    }

    /// Puts a chat line that did not go through back into an empty input.
    fn restore_line(&mut self, line: String) {
        if self.input.value().is_empty() {
            self.input = Input::new(line);
        }
    }
}

/// What a chat input line asks for.
enum ChatInput {
    Send(Command, Sent),
    Local(Action),
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
        "help" => Ok(ChatInput::Local(Action::Help)),
        "quit" => Ok(ChatInput::Local(Action::Quit)),
        _ => Err(format!(
            "unknown command /{word}: try /tell NAME text, /who, /kick NAME, /ban NAME, /help, /quit (// to say a line starting with /)"
        )),
    }
}

/// The milliseconds a `cooldown` error says are left.
fn cooldown_ms(e: &crate::protocol::WireError) -> Option<u64> {
    (e.code == ErrorCode::Cooldown)
        .then(|| e.message.trim().parse().ok())
        .flatten()
}

/// A duration in seconds with one decimal, rounded up, so it never shows
/// 0.0 while time is left: "2.4 s".
pub fn format_tenths(d: Duration) -> String {
    let tenths = d.as_millis().div_ceil(100);
    format!("{}.{} s", tenths / 10, tenths % 10)
}

/// How long ago something happened, `ms` milliseconds back, in words.
pub fn format_ago(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0 => "just now".into(),
        1..60 => format!("{secs} s ago"),
        60..3600 => format!("{} min ago", secs / 60),
        3600..172_800 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
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
mod tests;
