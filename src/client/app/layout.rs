//! Where everything on the main screen goes. Computed by the state once
//! per update from the terminal size and kept ([`App::layout`]), so the
//! drawing, the mouse and the chat's paging all use the same rectangles.
//!
//! [`App::layout`]: super::App::layout

use ratatui::layout::{Constraint, Layout, Margin, Rect};

/// Smallest terminal the main screen is drawn in.
pub const MIN_SIZE: (u16, u16) = (50, 12);
/// Narrowest the users and chat column gets; the canvas scrolls instead.
const SIDE_MIN: u16 = 28;
/// Columns the canvas pane keeps for its titles (size, zoom, cursor and
/// colour), however small the canvas: a small canvas is centred in it.
const TITLE_ROOM: u16 = 44;
/// Rows the canvas pane keeps, however flat the canvas.
const MIN_ROWS: u16 = 4;

/// Where everything on the main screen goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    /// The canvas block, border included.
    pub canvas: Rect,
    /// The cells that show pixels.
    pub canvas_inner: Rect,
    /// The palette bar.
    pub palette: Rect,
    /// The users block.
    pub users: Rect,
    /// The chat block, border included.
    pub chat: Rect,
    /// The chat messages.
    pub messages: Rect,
    /// The chat input line.
    pub input: Rect,
    /// The status bar.
    pub status: Rect,
}

impl Areas {
    /// The most cells the canvas can have inside its border in `area`:
    /// all but the palette, the status bar and the narrowest side column.
    pub fn room(area: Rect) -> (u16, u16) {
        (
            area.width.saturating_sub(SIDE_MIN + 2),
            area.height.saturating_sub(4),
        )
    }

    /// Lays out `area` for a canvas that wants `canvas` cells inside its
    /// border (see [`Areas::room`]; 64x32 until a canvas is known) and
    /// `users` names. `None` when the terminal is too small.
    pub fn compute(area: Rect, canvas: Option<(u16, u16)>, users: usize) -> Option<Areas> {
        if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
            return None;
        }
        let [body, palette, status] = Layout::vertical([
            Constraint::Fill(1),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(area);
        let room = Self::room(area);
        let (w, h) = canvas.unwrap_or((crate::DEFAULT_WIDTH, crate::DEFAULT_HEIGHT / 2));
        // Wide enough for the titles, even around a small canvas, which
        // is centred inside.
        let inner_w = w.max(TITLE_ROOM).min(room.0);
        let inner_h = h.max(MIN_ROWS).min(room.1);
        let [canvas_col, side] =
            Layout::horizontal([Constraint::Length(inner_w + 2), Constraint::Fill(1)]).areas(body);
        let canvas = Rect {
            height: (inner_h + 2).min(canvas_col.height),
            ..canvas_col
        };
        let users_h = (users as u16)
            .saturating_add(2)
            .clamp(3, (side.height / 3).max(3));
        let [users, chat] =
            Layout::vertical([Constraint::Length(users_h), Constraint::Fill(1)]).areas(side);
        let [messages, _rule, input] = Layout::vertical([
            Constraint::Fill(1),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(chat.inner(Margin::new(1, 1)));
        Some(Areas {
            canvas,
            canvas_inner: canvas.inner(Margin::new(1, 1)),
            palette,
            users,
            chat,
            messages,
            input,
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_64x64_canvas_takes_64x32_cells_beside_the_side_column() {
        let a = Areas::compute(Rect::new(0, 0, 120, 40), Some((64, 32)), 2).unwrap();
        assert_eq!((a.canvas_inner.width, a.canvas_inner.height), (64, 32));
        assert_eq!(a.users.x, a.canvas.right());
        assert_eq!(a.users.height, 4, "two names and the borders");
        assert_eq!((a.palette.y, a.status.y), (38, 39));
        assert_eq!(
            a.input.y + 2,
            a.chat.bottom(),
            "the input sits on the border"
        );
        assert!(Areas::compute(Rect::new(0, 0, 49, 40), None, 0).is_none());
        assert_eq!(Areas::room(Rect::new(0, 0, 120, 40)), (90, 36));
    }

    #[test]
    fn a_narrow_terminal_keeps_the_side_column_and_narrows_the_canvas() {
        let a = Areas::compute(Rect::new(0, 0, MIN_SIZE.0, MIN_SIZE.1), Some((64, 32)), 0);
        let a = a.unwrap();
        assert_eq!(a.chat.width, SIDE_MIN);
        assert_eq!(a.canvas.width, MIN_SIZE.0 - SIDE_MIN);
    }

    #[test]
    fn a_tiny_canvas_still_gets_room_for_its_titles() {
        let a = Areas::compute(Rect::new(0, 0, 96, 28), Some((16, 8)), 1).unwrap();
        assert_eq!(a.canvas_inner.width, TITLE_ROOM);
        assert_eq!(a.canvas_inner.height, 8);
    }
}
