//! The client's state and how every input changes it.
//!
//! Pure: no sockets, no terminal, no clock (callers pass `now`), and no
//! drawing: the drawing reads this state, never the other way round. The
//! state is a set of components, each owning its part and handling the
//! events that concern it: [`login`], [`canvas`], [`palette`], [`users`],
//! [`chat`] and [`status`], with [`session`] keeping the conversation
//! with the server. [`App::update`] routes each key, click and resize to
//! them; a component that needs something beyond itself pushes a
//! [`Request`], which the app carries out (components never call each
//! other). Network reports are applied in `reports`. What should happen
//! in the world comes out as [`Intent`]s for the loop to carry out.
//!
//! The layout is computed here, once per update, from the terminal size
//! ([`layout`]) and kept, so a click is hit-tested against the rectangles
//! that were drawn and the chat pages by what its pane shows.

pub mod blocks;
pub mod canvas;
pub mod chat;
pub mod layout;
pub mod login;
pub mod palette;
pub mod prompt;
mod reports;
pub mod session;
pub mod status;
pub mod template;
pub mod users;
pub mod viewport;
pub mod wrap;

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyEvent, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::{Position, Rect};
use tui_input::Input;

use self::canvas::{CanvasPane, MAX_QUEUED_PIXELS, PendingPixel};
use self::chat::{ChatLine, ChatPane};
use self::layout::Areas;
use self::login::{Field, LoginForm};
use self::palette::Palette;
use self::prompt::{Ask, Prompt};
use self::session::{Link, Sent, Session};
use self::status::Status;
use self::template::Template;
use self::users::Users;
use super::color::ColorMode;
use super::event::AppEvent;
use super::keys::{self, Action};
use super::net::Login;
use crate::protocol::{Command, validate_name};

/// Which screen is up.
#[derive(Debug, Clone)]
pub enum Screen {
    /// Asking for a name.
    Login(LoginForm),
    /// The canvas, chat and status.
    Main,
}

/// Where keys go on the main screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    /// Drawing: the key table's [`keys::DRAWING`] rows.
    Canvas,
    /// Typing in the chat input.
    Chat,
    /// Answering the prompt ([`App::prompt`]).
    Prompt,
}

/// What is drawn over the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    /// Nothing.
    None,
    /// The key help.
    Help,
}

/// What became of a pixel to place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placed {
    /// Sent with this tag.
    Sent(u64),
    /// Offline: kept to send on reconnect.
    Queued,
    /// Not placed (no canvas, a cooldown, too many waiting); said so.
    Refused,
}

/// What the loop should do for the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Join with this login.
    Login(Login),
    /// Read the template image at `path` and hand it back as
    /// [`AppEvent::Template`] with `at`.
    LoadTemplate {
        /// The file.
        path: String,
        /// Where its top-left corner goes on the canvas.
        at: (u16, u16),
    },
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

/// What a component asks of the rest of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Keys go to drawing.
    FocusCanvas,
    /// Keys go to the chat input.
    FocusChat,
    /// Show the key help.
    Help,
    /// Leave.
    Quit,
    /// Place the selected colour at this pixel.
    Place((u16, u16)),
    /// A drag went over this pixel: place the selected colour there,
    /// unless it has it, one pixel of the stroke at a time.
    Paint((u16, u16)),
    /// Select the colour of this pixel (eyedropper).
    Pick((u16, u16)),
    /// Move the cursor to this pixel and centre the view on it.
    GoTo(u32, u32),
    /// Open the prompt asking this.
    Prompt(Ask),
    /// Overlay the image at `path` with its top-left corner at `at`.
    Template {
        /// The image file.
        path: String,
        /// The canvas pixel of its top-left corner.
        at: (u16, u16),
    },
    /// Take the template away.
    NoTemplate,
    /// Ask the server who placed this pixel.
    Whose((u16, u16)),
    /// Join again now with the last login.
    Reconnect,
    /// Send a chat line (only while online; the text stays otherwise).
    Say {
        /// The command.
        cmd: Command,
        /// What it was typed as.
        sent: Sent,
    },
    /// Join with the login screen's name and, if it showed one, password.
    Join {
        /// The name typed.
        name: String,
        /// The password typed, if the field was shown.
        password: Option<String>,
    },
}

/// The whole client state; see the module docs.
#[derive(Debug)]
pub struct App {
    /// Screen shown.
    pub screen: Screen,
    /// Where keys go.
    pub focus: Focus,
    /// What is drawn on top.
    pub overlay: Overlay,
    /// Lines of the help scrolled past, when it is taller than the screen.
    pub help_scroll: u16,
    /// Terminal size, columns and rows.
    pub size: (u16, u16),
    /// The main screen's layout for [`App::size`], as last drawn; `None`
    /// when the terminal is too small.
    pub layout: Option<Areas>,
    /// The time of the latest update, for countdowns drawn on screen.
    pub now: Instant,
    /// The canvas pane.
    pub canvas: CanvasPane,
    /// The palette bar.
    pub palette: Palette,
    /// The users pane.
    pub users: Users,
    /// The chat pane.
    pub chat: ChatPane,
    /// The status bar's notice and countdown.
    pub status: Status,
    /// The prompt, while it is up.
    pub prompt: Option<Prompt>,
    /// The template overlaid on the canvas, if any.
    pub template: Option<Template>,
    /// The conversation with the server.
    pub session: Session,
    intents: Vec<Intent>,
}

impl App {
    /// A client for `server`; with a `name` it joins at once, without it
    /// starts on the login screen.
    pub fn new(server: impl Into<String>, name: Option<String>, color_mode: ColorMode) -> Self {
        let mut app = Self {
            screen: match &name {
                Some(_) => Screen::Main,
                None => Screen::Login(LoginForm::default()),
            },
            focus: Focus::Canvas,
            overlay: Overlay::None,
            help_scroll: 0,
            size: (80, 24),
            layout: None,
            now: Instant::now(),
            canvas: CanvasPane::default(),
            palette: Palette::new(color_mode),
            users: Users::default(),
            chat: ChatPane::default(),
            status: Status::default(),
            prompt: None,
            template: None,
            session: Session::new(server.into(), name),
            intents: Vec::new(),
        };
        app.relayout();
        app
    }

    /// The same client with a password (`--password`) for every login.
    pub fn with_password(mut self, password: Option<String>) -> Self {
        self.session.password = password.filter(|p| !p.is_empty());
        self
    }

    /// The same client showing chat times `seconds` east of UTC (the
    /// local time zone, which only the process can find out).
    pub fn with_utc_offset(mut self, seconds: i32) -> Self {
        self.chat.utc_offset = seconds;
        self
    }

    /// The same client with a template (`--template`) at `at`.
    pub fn with_template(mut self, image: crate::client::image::Image, at: (u16, u16)) -> Self {
        self.set_template(image, at, Instant::now());
        self
    }

    fn set_template(&mut self, image: crate::client::image::Image, at: (u16, u16), now: Instant) {
        let mut template = Template::new(image, at, &self.palette.rgbs());
        if let Some(canvas) = &self.canvas.pixels {
            template.recount(canvas);
        }
        self.status.inform(
            now,
            format!(
                "template {} ({}x{}) at ({},{}): t shows it, n goes to the next pixel it wants",
                template.name, template.width, template.height, at.0, at.1
            ),
        );
        self.template = Some(template);
    }

    /// The template's count after the canvas or the palette changed.
    pub(super) fn recount_template(&mut self) {
        if let (Some(t), Some(canvas)) = (&mut self.template, &self.canvas.pixels) {
            t.map(&self.palette.rgbs());
            t.recount(canvas);
        }
    }

    /// `n`, `N`: to the next (or previous) pixel the template wants
    /// otherwise, with its colour selected.
    fn next_diff(&mut self, forward: bool, now: Instant) {
        let (Some(t), Some(canvas)) = (&self.template, &self.canvas.pixels) else {
            self.status
                .notify(now, "no template: /template FILE.png X,Y loads one");
            return;
        };
        match t.next_diff(canvas, self.canvas.cursor, forward) {
            Some((x, y)) => {
                if let Some(want) = t.wants(x, y) {
                    self.palette.selected = want;
                }
                self.canvas.cursor = (x, y);
                self.canvas.reveal(self.layout.map(|a| a.canvas_inner));
            }
            None => self
                .status
                .inform(now, "the template is done: nothing left to place"),
        }
    }

    /// The intents to start with: joining with the `--name` given, or the
    /// login screen showing why that name cannot work.
    pub fn start(&mut self) -> Vec<Intent> {
        if let Some(name) = self.session.initial_name.take() {
            let login = Login::new(name).with_password(self.session.password.clone());
            self.submit_login(login);
        }
        self.relayout();
        std::mem::take(&mut self.intents)
    }

    /// Applies one event at time `now` and returns what to do about it.
    pub fn update(&mut self, event: AppEvent, now: Instant) -> Vec<Intent> {
        self.now = now;
        self.chat.clock_ms = self.session.wall.unix_ms(now);
        let mut requests = Vec::new();
        match event {
            AppEvent::Key(key) => self.on_key(key, &mut requests),
            AppEvent::Mouse(mouse) => self.on_mouse(mouse, &mut requests),
            AppEvent::Resize { width, height } => self.size = (width, height),
            AppEvent::Net(event) => self.on_net(event, now),
            AppEvent::Template { image, at } => match image {
                Ok(image) => self.set_template(image, at, now),
                Err(why) => {
                    self.chat.push(ChatLine::Error(format!("template: {why}")));
                    self.status.notify(now, format!("template: {why}"));
                }
            },
            AppEvent::Tick => {}
            AppEvent::Quit => requests.push(Request::Quit),
        }
        for request in requests {
            self.carry_out(request, now);
        }
        self.status.expire(now);
        self.relayout();
        std::mem::take(&mut self.intents)
    }

    /// The terminal area.
    pub fn area(&self) -> Rect {
        Rect::new(0, 0, self.size.0, self.size.1)
    }

    /// How long placing is still refused, if it is.
    pub fn cooldown_left(&self) -> Option<Duration> {
        self.status.cooldown_left(self.now)
    }

    /// True while something on screen changes faster than once a second
    /// (the cooldown countdown), so the loop should redraw more often.
    pub fn animating(&self) -> bool {
        self.status.cooldown.is_some()
    }

    /// Lays the main screen out for the terminal size and what it shows
    /// (the canvas at its zoom), and scrolls the canvas so the cursor
    /// stays in view.
    fn relayout(&mut self) {
        let wanted = self.canvas.settle_zoom(self.room());
        self.layout = Areas::compute(self.area(), wanted, self.users.names.len());
        if let Some(areas) = &self.layout {
            self.canvas.follow(areas.canvas_inner);
            self.chat.view = (areas.messages.width, areas.messages.height);
        }
    }

    /// The most cells the canvas pane can grow to.
    fn room(&self) -> (u16, u16) {
        Areas::room(self.area())
    }

    fn on_key(&mut self, key: KeyEvent, out: &mut Vec<Request>) {
        if keys::lookup(keys::ANYWHERE, &key) == Some(Action::Quit) {
            out.push(Request::Quit);
            return;
        }
        if self.overlay == Overlay::Help {
            // Scrolling keys scroll a help taller than the screen; any
            // other key closes it and does nothing else.
            match keys::lookup(keys::HELP, &key) {
                Some(Action::ScrollDown) => {
                    self.help_scroll = (self.help_scroll + 4).min(keys::help_len())
                }
                Some(Action::ScrollUp) => self.help_scroll = self.help_scroll.saturating_sub(4),
                _ => self.overlay = Overlay::None,
            }
            return;
        }
        if let Screen::Login(form) = &mut self.screen {
            form.on_key(key, out);
            return;
        }
        match self.focus {
            Focus::Prompt => match &mut self.prompt {
                Some(prompt) => prompt.on_key(key, out),
                None => out.push(Request::FocusCanvas),
            },
            Focus::Chat => self
                .chat
                .on_key(key, self.layout.as_ref(), &self.users.names, out),
            Focus::Canvas => {
                if let Some(action) = keys::lookup(keys::DRAWING, &key) {
                    self.on_action(action, out);
                }
            }
        }
    }

    /// A drawing key, offered to each pane in turn; what none takes is
    /// the app's own.
    fn on_action(&mut self, action: Action, out: &mut Vec<Request>) {
        let inner = self.layout.map(|a| a.canvas_inner);
        if self.canvas.on_action(action, inner, self.room(), out)
            || self.palette.on_action(action)
            || self.chat.on_action(action, self.layout.as_ref(), out)
        {
            return;
        }
        match action {
            Action::Help => out.push(Request::Help),
            Action::Quit => out.push(Request::Quit),
            Action::Reconnect => out.push(Request::Reconnect),
            Action::GoTo if self.canvas.pixels.is_some() => out.push(Request::Prompt(Ask::GoTo)),
            Action::Ghost => match &mut self.template {
                Some(t) => t.ghost = !t.ghost,
                None => self
                    .status
                    .notify(self.now, "no template: /template FILE.png X,Y loads one"),
            },
            Action::NextDiff => self.next_diff(true, self.now),
            Action::PrevDiff => self.next_diff(false, self.now),
            _ => {}
        }
    }

    fn on_mouse(&mut self, mouse: MouseEvent, out: &mut Vec<Request>) {
        if self.overlay == Overlay::Help {
            if matches!(mouse.kind, MouseEventKind::Down(_)) {
                self.overlay = Overlay::None;
            }
            return;
        }
        if !matches!(self.screen, Screen::Main) {
            return;
        }
        let Some(areas) = self.layout else {
            return;
        };
        let at = Position::new(mouse.column, mouse.row);
        if self
            .canvas
            .on_mouse(mouse.kind, areas.canvas_inner, self.room(), at, out)
        {
            return;
        }
        if mouse.kind == MouseEventKind::Down(MouseButton::Left)
            && self.palette.on_click(areas.palette, at)
        {
            return;
        }
        self.chat.on_mouse(mouse.kind, at, &areas, out);
    }

    fn carry_out(&mut self, request: Request, now: Instant) {
        if matches!(request, Request::FocusCanvas | Request::FocusChat) {
            self.prompt = None;
        }
        match request {
            Request::FocusCanvas => self.focus = Focus::Canvas,
            Request::FocusChat => self.focus = Focus::Chat,
            Request::Prompt(ask) => {
                self.prompt = Some(Prompt::new(ask));
                self.focus = Focus::Prompt;
            }
            Request::GoTo(x, y) => {
                self.canvas.go_to(x, y);
                if let Some((w, h)) = self.canvas.size()
                    && (x >= u32::from(w) || y >= u32::from(h))
                {
                    self.status.notify(
                        now,
                        format!("({x},{y}) is outside the {w}x{h} canvas: went to its edge"),
                    );
                }
            }
            Request::Pick(at) => self.pick(at, now),
            Request::Template { path, at } => self.intents.push(Intent::LoadTemplate { path, at }),
            Request::NoTemplate => {
                self.template = None;
                self.status.inform(now, "template removed");
            }
            Request::Paint(at) => {
                if self.canvas.shown(at.0, at.1) != Some(self.palette.selected) {
                    self.canvas.strokes.push_back(at);
                    self.paint_next(now);
                }
            }
            Request::Help => {
                self.overlay = Overlay::Help;
                self.help_scroll = 0;
            }
            Request::Quit => self.intents.push(Intent::Quit),
            Request::Place(at) => {
                self.place(at, now);
            }
            Request::Whose(at) => self.ask_whose(at, now),
            Request::Reconnect => self.reconnect(now),
            Request::Say { cmd, sent } => {
                if !self.session.online() {
                    // Chat is live talk: rather than send it late, keep the
                    // text for the user to send when the connection is back.
                    self.status
                        .notify(now, "offline: not sent (the text stays in the input)");
                    return;
                }
                self.chat.sent();
                self.session.send(cmd, sent, &mut self.intents);
            }
            Request::Join { name, password } => {
                if password.is_some() {
                    self.session.password = password;
                }
                let login = Login::new(name).with_password(self.session.password.clone());
                self.submit_login(login);
            }
        }
    }

    fn submit_login(&mut self, login: Login) {
        match validate_name(&login.name) {
            Ok(()) => {
                if let Screen::Login(form) = &mut self.screen {
                    form.error = None;
                }
                self.session.login = Some(login.clone());
                self.intents.push(Intent::Login(login));
            }
            Err(e) => self.show_login(login.name.clone(), Field::Name, e.message),
        }
    }

    /// Opens the login screen on `field`, saying `why`. The password
    /// field shows when the server asked for one or we have one.
    fn show_login(&mut self, name: String, field: Field, why: String) {
        let password = match field {
            Field::Password => Some(Input::default()),
            Field::Name => self.session.password.clone().map(Input::new),
        };
        self.screen = Screen::Login(LoginForm::new(name, password, field, why));
        self.session.link = Link::Idle;
    }

    /// `r`: joins again at once with the last login, after an admin's kick
    /// or instead of waiting for the next attempt.
    fn reconnect(&mut self, now: Instant) {
        match (&self.session.link, &self.session.login) {
            (Link::Evicted { .. } | Link::Retrying { .. }, Some(login)) => {
                self.intents.push(Intent::Login(login.clone()));
                self.session.link = Link::Connecting { attempt: 1 };
            }
            (Link::Online, _) => self.status.inform(now, "connected already"),
            _ => {}
        }
    }

    /// `w`: asks the server who placed the pixel at `(x, y)`.
    fn ask_whose(&mut self, (x, y): (u16, u16), now: Instant) {
        if self.canvas.pixels.is_none() {
            return;
        }
        if !self.session.online() {
            self.status.notify(now, "offline: cannot ask who placed it");
            return;
        }
        let cmd = Command::Whose {
            x: x.into(),
            y: y.into(),
        };
        self.session
            .send(cmd, Sent::Whose { x, y }, &mut self.intents);
    }

    /// Places the selected colour at `at`: sent at once when online,
    /// queued (and drawn as queued) when not.
    fn place(&mut self, at: (u16, u16), now: Instant) -> Placed {
        if self.canvas.pixels.is_none() {
            self.status
                .notify(now, "no canvas yet: wait for the connection");
            return Placed::Refused;
        }
        if self.cooldown_left().is_some() {
            // The server would refuse it: say so rather than send it. The
            // status bar shows how long is left, counting down.
            self.status.notify(now, "not placed: wait for the cooldown");
            return Placed::Refused;
        }
        if self.canvas.pending.len() >= MAX_QUEUED_PIXELS {
            self.status
                .notify(now, "too many pixels waiting: this one was not placed");
            return Placed::Refused;
        }
        let mut pixel = PendingPixel {
            x: at.0,
            y: at.1,
            color: self.palette.selected,
            tag: None,
        };
        let placed = if self.session.online() {
            let tag = self.send_pixel(&pixel);
            pixel.tag = Some(tag);
            Placed::Sent(tag)
        } else {
            self.status
                .notify(now, "offline: the pixel is queued and sent on reconnect");
            Placed::Queued
        };
        self.canvas.pending.push(pixel);
        placed
    }

    /// Places the next pixels of the strokes being painted, one at a
    /// time while online: the next goes out when the server has answered
    /// the last, so a cooldown stops a stroke after one refusal rather
    /// than a burst of them.
    pub(super) fn paint_next(&mut self, now: Instant) {
        while self.canvas.stroke_tag.is_none() {
            let Some(at) = self.canvas.strokes.pop_front() else {
                return;
            };
            match self.place(at, now) {
                Placed::Sent(tag) => self.canvas.stroke_tag = Some(tag),
                Placed::Queued => {}
                Placed::Refused => {
                    let left = self.canvas.strokes.len();
                    self.canvas.strokes.clear();
                    if left > 0 {
                        self.status
                            .notify(now, format!("{} pixels of the stroke not placed", left + 1));
                    }
                }
            }
        }
    }

    /// The eyedropper: selects the colour drawn at `at`.
    fn pick(&mut self, at: (u16, u16), now: Instant) {
        let Some(color) = self.canvas.shown(at.0, at.1) else {
            return;
        };
        if usize::from(color) < self.palette.swatches.len() {
            self.palette.selected = color;
            let name = self.palette.name(color).to_string();
            self.status
                .inform(now, format!("colour {name} from ({},{})", at.0, at.1));
        }
    }

    fn send_pixel(&mut self, p: &PendingPixel) -> u64 {
        let cmd = Command::Set {
            x: p.x.into(),
            y: p.y.into(),
            color: p.color.into(),
        };
        self.session.send(cmd, Sent::Pixel, &mut self.intents)
    }
}

#[cfg(test)]
mod tests;
