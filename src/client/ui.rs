//! Drawing: a pure function of the [`App`] state. Each pane has its widget
//! in a module of its own; [`draw`] puts them where the state's kept
//! layout says, and draws the login screen, the help or a "too small" note
//! instead when those are up. The drawing reads the state's types; the
//! state never reads the drawing.
//!
//! The canvas uses half blocks: a cell shows `▀` with the upper pixel as the
//! foreground and the lower one as the background, so a 64x64 canvas takes
//! 64x32 cells.

mod canvas;
mod chat;
mod help;
mod login;
mod palette;
mod status;
mod users;

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Color, Style};
use ratatui::widgets::{Paragraph, Widget, Wrap};

use super::app::layout::{Areas, MIN_SIZE};
use super::app::session::Link;
use super::app::{App, Focus, Overlay, Screen};
use super::color::ColorMode;

/// The highlight colour for focus, the cursor rulers and the selection.
const ACCENT: Color = Color::Yellow;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    match &app.screen {
        Screen::Login(form) => login::draw(frame, area, app, form),
        Screen::Main => {
            // The loop hands every resize to the state before drawing; the
            // fallback only keeps a frame of another size in bounds.
            let areas = if area == app.area() {
                app.layout
            } else {
                Areas::compute(area, None, app.users.names.len())
            };
            match areas {
                Some(areas) => draw_main(frame, &areas, app),
                None => too_small(frame.buffer_mut(), area),
            }
        }
    }
    if app.overlay == Overlay::Help {
        help::Help {
            palette: &app.palette,
            scroll: app.help_scroll,
        }
        .render(area, frame.buffer_mut());
    }
    if app.palette.mode == ColorMode::NoColor {
        // NO_COLOR: every pane styles itself in colour; taking the colours
        // out here, once, keeps bold, dim and reverse, which are not colours.
        for cell in frame.buffer_mut().content.iter_mut() {
            cell.set_fg(Color::Reset).set_bg(Color::Reset);
        }
    }
}

fn too_small(buf: &mut Buffer, area: Rect) {
    let text = format!(
        "Too small: {}x{}\n(pixchat needs {}x{})\nq quits",
        area.width, area.height, MIN_SIZE.0, MIN_SIZE.1
    );
    Paragraph::new(text)
        .alignment(Alignment::Center)
        .wrap(Wrap { trim: true })
        .render(area, buf);
}

fn draw_main(frame: &mut Frame, areas: &Areas, app: &App) {
    let buf = frame.buffer_mut();
    canvas::CanvasView {
        pane: &app.canvas,
        palette: &app.palette,
        template: app.template.as_ref(),
        focused: app.focus == Focus::Canvas,
        waiting: waiting(app),
    }
    .render(areas.canvas, buf);
    app.palette.render(areas.palette, buf);
    app.users.render(areas.users, buf);
    let chat = chat::ChatView {
        pane: &app.chat,
        focused: app.focus == Focus::Chat,
        messages: areas.messages,
        input: areas.input,
    };
    chat.render(areas.chat, buf);
    status::StatusBar(app).render(areas.status, buf);
    if app.focus == Focus::Chat && app.overlay == Overlay::None {
        frame.set_cursor_position(chat::cursor(&app.chat, areas.input));
    }
}

/// What the canvas pane says while there is no canvas.
fn waiting(app: &App) -> String {
    match &app.session.link {
        Link::Online | Link::Connecting { .. } | Link::Idle => {
            format!("connecting to {}…", app.session.server)
        }
        Link::Retrying { reason, .. } | Link::Offline { reason } | Link::Evicted { reason } => {
            format!("no canvas yet: {reason}")
        }
    }
}

fn focus_style(focused: bool) -> Style {
    if focused {
        Style::new().fg(ACCENT)
    } else {
        Style::new().fg(Color::DarkGray)
    }
}

/// A stable colour per name, so speakers are told apart at a glance.
fn name_style(name: &str) -> Style {
    const COLORS: [Color; 6] = [
        Color::Cyan,
        Color::Green,
        Color::Magenta,
        Color::LightBlue,
        Color::LightRed,
        Color::LightGreen,
    ];
    let hash = name.bytes().fold(0u32, |h, b| {
        h.wrapping_mul(31)
            .wrapping_add(u32::from(b.to_ascii_lowercase()))
    });
    Style::new().fg(COLORS[hash as usize % COLORS.len()])
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    )
}

#[cfg(test)]
mod tests;
