//! Builders shared by the state and rendering tests: events as a user or
//! the server would produce them, and an app already online.

use std::sync::Arc;
use std::time::Instant;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, Intent};
use super::color::ColorMode;
use super::event::AppEvent;
use super::net::{ClientEvent, Login};
use crate::protocol::{PALETTE, Snapshot, Welcome};

pub const SERVER: &str = "127.0.0.1:7878";

pub fn t0() -> Instant {
    Instant::now()
}

pub fn key(c: char) -> AppEvent {
    AppEvent::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

pub fn code(code: KeyCode) -> AppEvent {
    AppEvent::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

pub fn shift(code: KeyCode) -> AppEvent {
    AppEvent::Key(KeyEvent::new(code, KeyModifiers::SHIFT))
}

pub fn ctrl(c: char) -> AppEvent {
    AppEvent::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

pub fn net(event: ClientEvent) -> AppEvent {
    AppEvent::Net(event)
}

/// A blank canvas.
pub fn snapshot(id: u64, width: u16, height: u16, seq: u64) -> Arc<Snapshot> {
    Arc::new(Snapshot {
        canvas_id: id,
        seq,
        width,
        height,
        pixels: vec![0; usize::from(width) * usize::from(height)],
    })
}

pub fn welcome(name: &str, snap: &Snapshot, users: &[&str], resumed: bool) -> Welcome {
    Welcome {
        name: name.into(),
        canvas_id: snap.canvas_id,
        width: snap.width,
        height: snap.height,
        seq: snap.seq,
        palette: PALETTE
            .iter()
            .map(|c| (c.rgb, c.name.to_string()))
            .collect(),
        online: users.len() as u32,
        users: users.iter().map(|u| u.to_string()).collect(),
        resumed,
    }
}

/// Alice's join with this snapshot.
pub fn joined(snap: Arc<Snapshot>, users: &[&str]) -> AppEvent {
    net(ClientEvent::Joined {
        welcome: welcome("alice", &snap, users, false),
        snapshot: Some(snap),
    })
}

/// Alice online on a blank `width` x `height` canvas (id 1, seq 0) in a
/// terminal of `size`.
pub fn online_on(width: u16, height: u16, size: (u16, u16), mode: ColorMode) -> App {
    let mut app = App::new(SERVER, Some("alice".into()), mode);
    assert_eq!(app.start(), vec![Intent::Login(Login::new("alice"))]);
    app.update(
        AppEvent::Resize {
            width: size.0,
            height: size.1,
        },
        t0(),
    );
    app.update(
        joined(snapshot(1, width, height, 0), &["alice", "bob"]),
        t0(),
    );
    app
}

/// Alice online on an 8x6 canvas in a 120x40 terminal.
pub fn online() -> App {
    online_on(8, 6, (120, 40), ColorMode::TrueColor)
}
