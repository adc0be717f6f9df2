//! Everything the client's loop reacts to, as one enum: the terminal's keys,
//! mouse and resizes, the network client's reports, the clock, and signals.

use ratatui::crossterm::event::{Event as TermEvent, KeyEvent, KeyEventKind, MouseEvent};

use super::net::ClientEvent;

/// One input to [`App::update`](super::app::App::update).
#[derive(Debug, Clone)]
pub enum AppEvent {
    /// A key press (releases are dropped where the terminal reports them).
    Key(KeyEvent),
    /// A mouse click, drag or wheel turn.
    Mouse(MouseEvent),
    /// The terminal has a new size.
    Resize {
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
    /// Something from the network client.
    Net(ClientEvent),
    /// The template image asked for ([`Intent::LoadTemplate`]), read, or
    /// why it could not be.
    ///
    /// [`Intent::LoadTemplate`]: super::app::Intent::LoadTemplate
    Template {
        /// The image, or why there is none.
        image: Result<super::image::Image, String>,
        /// Where its top-left corner goes.
        at: (u16, u16),
    },
    /// The once-a-second clock: countdowns and notices that expire.
    Tick,
    /// A signal (SIGTERM, SIGHUP) asks the client to stop.
    Quit,
}

impl AppEvent {
    /// The event a terminal event means to the app, if any.
    pub fn from_terminal(event: TermEvent) -> Option<Self> {
        match event {
            TermEvent::Key(key) if key.kind != KeyEventKind::Release => Some(AppEvent::Key(key)),
            TermEvent::Mouse(mouse) => Some(AppEvent::Mouse(mouse)),
            TermEvent::Resize(width, height) => Some(AppEvent::Resize { width, height }),
            _ => None,
        }
    }
}
