//! The canvas pane: the pixels as this client knows them, the cursor, the
//! part of the canvas in view, and the pixels placed but not yet confirmed
//! (drawn over the canvas). Moving the cursor is its own business; placing
//! and asking who placed a pixel go out as [`Request`]s.

use ratatui::layout::{Position, Rect};

use super::Request;
use crate::client::keys::Action;
use crate::protocol::{Pixel, Snapshot};

/// Pixels kept while offline (or unanswered) before new ones are refused.
pub const MAX_QUEUED_PIXELS: usize = 1000;

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

/// The canvas pane's state.
#[derive(Debug, Clone, Default)]
pub struct CanvasPane {
    /// The canvas, once a snapshot arrived; kept while offline.
    pub pixels: Option<Canvas>,
    /// Cursor pixel.
    pub cursor: (u16, u16),
    /// Top-left pixel in view (the row is always even, so a cell's two
    /// pixels never change halves while scrolling). Kept following the
    /// cursor by [`CanvasPane::follow`] after every update.
    pub view: (u16, u16),
    /// Pixels not yet confirmed, oldest first; drawn over the canvas.
    pub pending: Vec<PendingPixel>,
}

impl CanvasPane {
    /// Canvas width and height, once known.
    pub fn size(&self) -> Option<(u16, u16)> {
        self.pixels.as_ref().map(|c| (c.width, c.height))
    }

    /// Pixels placed while offline and not yet sent.
    pub fn queued(&self) -> usize {
        self.pending.iter().filter(|p| p.tag.is_none()).count()
    }

    /// A new canvas (a snapshot): the cursor stays, inside it.
    pub fn replace(&mut self, canvas: Canvas) {
        self.cursor = (
            self.cursor.0.min(canvas.width - 1),
            self.cursor.1.min(canvas.height - 1),
        );
        self.pixels = Some(canvas);
    }

    /// A drawing key: moves the cursor, or asks to place or to ask who
    /// placed the pixel under it. `false` passes the action on.
    pub fn on_action(&mut self, action: Action, out: &mut Vec<Request>) -> bool {
        match action {
            Action::Move { dx, dy } => self.move_cursor(dx, dy),
            Action::Place => out.push(Request::Place(self.cursor)),
            Action::Whose => out.push(Request::Whose(self.cursor)),
            _ => return false,
        }
        true
    }

    /// A left click at `at`, with the pixels shown in `inner`: moves the
    /// cursor there and asks to place. `false` when it missed the canvas.
    pub fn on_click(&mut self, inner: Rect, at: Position, out: &mut Vec<Request>) -> bool {
        let Some(pixel) = self.pixel_at(inner, at) else {
            return false;
        };
        self.cursor = pixel;
        out.push(Request::FocusCanvas);
        out.push(Request::Place(pixel));
        true
    }

    fn move_cursor(&mut self, dx: i32, dy: i32) {
        let Some((w, h)) = self.size() else {
            return;
        };
        let clamp =
            |v: u16, d: i32, len: u16| (i32::from(v) + d).clamp(0, i32::from(len) - 1) as u16;
        self.cursor = (clamp(self.cursor.0, dx, w), clamp(self.cursor.1, dy, h));
    }

    /// Moves the view as little as needed to show the cursor in `inner`,
    /// as an editor scrolls.
    pub fn follow(&mut self, inner: Rect) {
        let Some((w, h)) = self.size() else {
            self.view = (0, 0);
            return;
        };
        let x = follow(self.view.0, self.cursor.0, inner.width, w);
        let row = follow(
            self.view.1 / 2,
            self.cursor.1 / 2,
            inner.height,
            h.div_ceil(2),
        );
        self.view = (x, row * 2);
    }

    /// The pixel a click at `at` means. A cell shows two pixels and a
    /// click cannot tell which half was meant: it takes the upper one,
    /// and the lower one when the cursor is already on the upper one, so
    /// a second click on the same cell reaches it.
    pub fn pixel_at(&self, inner: Rect, at: Position) -> Option<(u16, u16)> {
        let (w, h) = self.size()?;
        if !inner.contains(at) {
            return None;
        }
        let (vx, vy) = self.view;
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
}

/// Keeps `offset` if `cursor` is inside `[offset, offset + span)`, else
/// moves it just enough.
fn follow(offset: u16, cursor: u16, span: u16, len: u16) -> u16 {
    if span == 0 || len <= span {
        return 0;
    }
    let mut o = offset.min(len - span);
    if cursor < o {
        o = cursor;
    } else if cursor >= o + span {
        o = cursor + 1 - span;
    }
    o.min(len - span)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::testing::snapshot;

    fn pane(width: u16, height: u16) -> CanvasPane {
        let mut pane = CanvasPane::default();
        pane.replace(Canvas::from_snapshot(&snapshot(1, width, height, 0)));
        pane
    }

    #[test]
    fn a_click_maps_a_cell_to_its_upper_pixel_through_the_view() {
        let mut pane = pane(64, 64);
        let inner = Rect::new(1, 1, 20, 10);
        pane.cursor = (40, 30);
        pane.follow(inner);
        assert_eq!(pane.view, (21, 12), "the cursor is the last shown");
        assert_eq!(pane.pixel_at(inner, Position::new(1, 1)), Some((21, 12)));
        assert_eq!(pane.pixel_at(inner, Position::new(3, 2)), Some((23, 14)));
        // The border and beyond are not the canvas.
        assert_eq!(pane.pixel_at(inner, Position::new(0, 1)), None);
        assert_eq!(pane.pixel_at(inner, Position::new(21, 1)), None);
    }

    #[test]
    fn a_click_below_a_small_canvas_misses_it() {
        let mut pane = pane(8, 6);
        let inner = Rect::new(1, 1, 20, 10);
        pane.follow(inner);
        let mut out = Vec::new();
        assert!(!pane.on_click(inner, Position::new(2, 4), &mut out));
        assert!(out.is_empty());
        assert!(pane.on_click(inner, Position::new(2, 3), &mut out));
        assert_eq!(out, [Request::FocusCanvas, Request::Place((1, 4))]);
    }

    #[test]
    fn keys_it_does_not_handle_are_passed_on() {
        let mut pane = pane(8, 6);
        let mut out = Vec::new();
        assert!(pane.on_action(Action::Move { dx: 9, dy: 1 }, &mut out));
        assert_eq!(pane.cursor, (7, 1));
        assert!(!pane.on_action(Action::NextColor, &mut out));
        assert!(out.is_empty());
    }
}
