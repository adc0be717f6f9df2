//! The canvas pane: the pixels as this client knows them, the cursor, the
//! zoom and the part of the canvas in view, the overview, a stroke being
//! dragged, and the pixels placed but not yet confirmed (drawn over the
//! canvas). Moving the cursor and the view is its own business; placing,
//! picking a colour and asking who placed a pixel go out as [`Request`]s.

use std::collections::HashSet;

use ratatui::crossterm::event::{MouseButton, MouseEventKind};
use ratatui::layout::{Position, Rect};

use super::Request;
use super::blocks::{Blocks, most_common};
use super::viewport::{self, Viewport, Zoom, centre, follow, overview_zoom};
use crate::client::keys::Action;
use crate::protocol::{Pixel, Snapshot};

/// Pixels kept while offline (or unanswered) before new ones are refused.
pub const MAX_QUEUED_PIXELS: usize = 1000;
/// The overview's largest size in cells (columns, rows), border excluded.
pub const OVERVIEW_MAX: (u16, u16) = (32, 16);

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
    blocks: Blocks,
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
            blocks: Blocks::new(s.width, s.height, &s.pixels),
        }
    }

    /// Palette index at `(x, y)`, if inside.
    pub fn get(&self, x: u16, y: u16) -> Option<u8> {
        (x < self.width && y < self.height)
            .then(|| self.pixels[usize::from(y) * usize::from(self.width) + usize::from(x)])
    }

    /// The most common colour of the `side` x `side` block whose top-left
    /// pixel is `(x, y)` (`side` a power of two, `x` and `y` multiples of
    /// it): what a dot zoomed out to 1:`side` shows.
    pub fn block(&self, x: u16, y: u16, side: u16) -> Option<u8> {
        if side <= 1 {
            return self.get(x, y);
        }
        if let Some(counts) = self.blocks.count(x, y, side) {
            return most_common(&counts);
        }
        // Small blocks: reading the pixels is as quick as any table.
        let mut counts = [0u32; super::blocks::COLORS];
        for py in y..y.saturating_add(side).min(self.height) {
            let row = usize::from(py) * usize::from(self.width);
            for px in x..x.saturating_add(side).min(self.width) {
                counts[usize::from(self.pixels[row + usize::from(px)]) % counts.len()] += 1;
            }
        }
        most_common(&counts)
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
        let i = usize::from(p.y) * usize::from(self.width) + usize::from(p.x);
        self.blocks.change(p.x, p.y, self.pixels[i], p.color);
        self.pixels[i] = p.color;
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

/// A drag with the left button: the pixels it went over, each painted
/// once.
#[derive(Debug, Clone, Default)]
pub struct Stroke {
    /// The last pixel reached.
    pub last: (u16, u16),
    /// Every pixel the stroke asked to paint.
    pub painted: HashSet<(u16, u16)>,
}

/// The canvas pane's state.
#[derive(Debug, Clone)]
pub struct CanvasPane {
    /// The canvas, once a snapshot arrived; kept while offline.
    pub pixels: Option<Canvas>,
    /// Cursor pixel.
    pub cursor: (u16, u16),
    /// How pixels map to dots on screen.
    pub zoom: Zoom,
    /// True once the user zoomed; until then the zoom fits small canvases
    /// to the pane and shows large ones at 1:1.
    pub zoom_chosen: bool,
    /// The dot at the top-left of the view (the row is always even, so a
    /// cell's two dots never change halves while scrolling). Kept
    /// following the cursor by [`CanvasPane::follow`] after every update.
    pub origin: (u32, u32),
    /// Show the overview when the canvas does not fit (`m` toggles).
    pub overview: bool,
    /// Pixels not yet confirmed, oldest first; drawn over the canvas.
    pub pending: Vec<PendingPixel>,
    /// The drag being painted, if any.
    pub stroke: Option<Stroke>,
    /// Pixels strokes went over, waiting to be placed one at a time.
    pub strokes: std::collections::VecDeque<(u16, u16)>,
    /// The stroke pixel whose answer is awaited before the next goes.
    pub stroke_tag: Option<u64>,
    /// Centre the view on the cursor at the next layout (after a zoom or
    /// a jump, whose layout is not known yet).
    recentre: bool,
}

impl Default for CanvasPane {
    fn default() -> Self {
        Self {
            pixels: None,
            cursor: (0, 0),
            zoom: Zoom::In(1),
            zoom_chosen: false,
            origin: (0, 0),
            overview: true,
            pending: Vec::new(),
            stroke: None,
            strokes: Default::default(),
            stroke_tag: None,
            recentre: false,
        }
    }
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

    /// The colour drawn at `(x, y)`: a pixel placed and not yet confirmed,
    /// else the canvas's.
    pub fn shown(&self, x: u16, y: u16) -> Option<u8> {
        self.pending
            .iter()
            .rev()
            .find(|p| (p.x, p.y) == (x, y))
            .map(|p| p.color)
            .or_else(|| self.pixels.as_ref()?.get(x, y))
    }

    /// A new canvas (a snapshot): the cursor stays, inside it.
    pub fn replace(&mut self, canvas: Canvas) {
        self.cursor = (
            self.cursor.0.min(canvas.width - 1),
            self.cursor.1.min(canvas.height - 1),
        );
        if self.size() != Some((canvas.width, canvas.height)) {
            self.zoom_chosen = false;
            self.recentre = true;
        }
        self.pixels = Some(canvas);
    }

    /// The zoom to use in `room` cells when the user has not chosen one:
    /// a small canvas scaled up to fill the pane, a large one at 1:1.
    fn auto_zoom(&self, room: (u16, u16)) -> Zoom {
        match self.size() {
            Some((w, h)) => match Zoom::fit(w, h, room) {
                Zoom::In(m) => Zoom::In(m),
                Zoom::Out(_) => Zoom::In(1),
            },
            None => Zoom::In(1),
        }
    }

    /// The widest zoom: the whole canvas in `room` cells, or 1:1 when it
    /// fits at 1:1 already.
    pub fn widest(&self, room: (u16, u16)) -> Zoom {
        match self.size().map(|(w, h)| Zoom::fit(w, h, room)) {
            Some(Zoom::Out(k)) => Zoom::Out(k),
            _ => Zoom::In(1),
        }
    }

    /// Settles the zoom for a pane of at most `room` cells and returns the
    /// cells the canvas wants at it (the pane is laid out from that).
    pub fn settle_zoom(&mut self, room: (u16, u16)) -> Option<(u16, u16)> {
        let (w, h) = self.size()?;
        if !self.zoom_chosen {
            // Scaled up, a small canvas still leaves the chat a fair share.
            self.zoom = self.auto_zoom((room.0 * 3 / 4, room.1));
        } else {
            let widest = self.widest(room);
            if widest.closer_than(self.zoom) {
                // The pane grew: zoomed out further than needed to see it all.
                self.zoom = widest;
            }
        }
        let cols = self.zoom.dots(w).min(u32::from(room.0)) as u16;
        let rows = self.zoom.dots(h).div_ceil(2).min(u32::from(room.1)) as u16;
        Some((cols, rows))
    }

    /// Where and what the canvas shows in the pane's `inner` cells.
    pub fn viewport(&self, inner: Rect) -> Option<Viewport> {
        Some(Viewport::new(self.zoom, self.size()?, self.origin, inner))
    }

    /// Where the overview goes in `inner` (its border included) and its
    /// zoom, when it is shown: the canvas does not fit, the user did not
    /// hide it, and the pane has room for it beside the view.
    pub fn overview_area(&self, inner: Rect) -> Option<(Rect, Zoom)> {
        let view = self.viewport(inner)?;
        let (w, h) = self.size()?;
        // Only when much of the canvas is out of sight: over a canvas that
        // almost fits, the overview would hide more than it shows.
        let shown = |dots: u16, len: u32| u32::from(dots) * 3 < len * 2;
        let (cols, rows) = (view.area.width, 2 * view.area.height);
        let much_hidden = shown(cols, self.zoom.dots(w)) || shown(rows, self.zoom.dots(h));
        if !self.overview || !much_hidden {
            return None;
        }
        let most = (
            OVERVIEW_MAX.0.min(inner.width / 3),
            OVERVIEW_MAX.1.min(inner.height / 2),
        );
        if most.0 < 4 || most.1 < 2 {
            return None;
        }
        let zoom = overview_zoom(w, h, most);
        let cols = zoom.dots(w) as u16 + 2;
        let rows = zoom.dots(h).div_ceil(2) as u16 + 2;
        let area = Rect::new(inner.right() - cols, inner.y, cols, rows);
        Some((area, zoom))
    }

    /// A drawing key that concerns the canvas: moves the cursor or the
    /// view, zooms, or asks to place, pick or ask who placed the pixel
    /// under the cursor. `inner` is the pane as last laid out and `room`
    /// the most it can grow to. `false` passes the action on.
    pub fn on_action(
        &mut self,
        action: Action,
        inner: Option<Rect>,
        room: (u16, u16),
        out: &mut Vec<Request>,
    ) -> bool {
        match action {
            Action::Move { dx, dy } => {
                let step = i32::from(self.zoom.block());
                self.move_cursor(dx * step, dy * step);
            }
            Action::Page { dx, dy } => self.page(dx, dy, inner),
            Action::ZoomIn => self.set_zoom(self.zoom.zoom_in()),
            Action::ZoomOut => self.set_zoom(self.zoom.zoom_out(self.widest(room))),
            Action::Centre => self.recentre = true,
            Action::Overview => self.overview = !self.overview,
            Action::Place => out.push(Request::Place(self.cursor)),
            Action::Pick => out.push(Request::Pick(self.cursor)),
            Action::Whose => out.push(Request::Whose(self.cursor)),
            _ => return false,
        }
        true
    }

    /// Goes to pixel `(x, y)` (clamped to the canvas) and centres on it.
    pub fn go_to(&mut self, x: u32, y: u32) {
        let Some((w, h)) = self.size() else {
            return;
        };
        self.cursor = (
            x.min(u32::from(w) - 1) as u16,
            y.min(u32::from(h) - 1) as u16,
        );
        self.recentre = true;
    }

    /// Shows the cursor after it jumped: centred when it left the view
    /// (or the view is unknown), else the view stays.
    pub fn reveal(&mut self, inner: Option<Rect>) {
        let inside = inner
            .and_then(|inner| self.viewport(inner))
            .and_then(|v| v.dots_of(self.cursor.0, self.cursor.1))
            .is_some();
        if !inside {
            self.recentre = true;
        }
    }

    fn set_zoom(&mut self, zoom: Zoom) {
        self.zoom_chosen = true;
        if zoom != self.zoom {
            self.zoom = zoom;
            self.recentre = true;
        }
    }

    /// Moves the view and the cursor by `dx`, `dy` screens.
    fn page(&mut self, dx: i32, dy: i32, inner: Option<Rect>) {
        let (Some(inner), Some((w, h))) = (inner, self.size()) else {
            return;
        };
        let view = Viewport::new(self.zoom, (w, h), self.origin, inner);
        let ((x0, x1), (y0, y1)) = view.pixels_in_view();
        let (span_x, span_y) = ((x1 - x0).max(1) as i32, (y1 - y0).max(1) as i32);
        self.move_cursor(dx * span_x, dy * span_y);
        let shift = |o: u32, d: i32, span: u32| {
            (i64::from(o) + i64::from(d) * i64::from(span)).max(0) as u32
        };
        self.origin = (
            shift(self.origin.0, dx, u32::from(view.area.width)),
            shift(self.origin.1, dy, 2 * u32::from(view.area.height)),
        );
    }

    /// A mouse event at `at`, with the canvas in `inner`: a left click
    /// places (or, zoomed out, moves the cursor), a drag paints a stroke,
    /// a right or middle click picks the colour, the wheel zooms, and a
    /// click on the overview jumps there. `false` when it missed the pane.
    pub fn on_mouse(
        &mut self,
        kind: MouseEventKind,
        inner: Rect,
        room: (u16, u16),
        at: Position,
        out: &mut Vec<Request>,
    ) -> bool {
        if let MouseEventKind::Up(MouseButton::Left) = kind {
            // A drag may end anywhere.
            self.stroke = None;
        }
        if let Some((area, zoom)) = self.overview_area(inner)
            && area.contains(at)
        {
            if let MouseEventKind::Down(MouseButton::Left) = kind {
                self.jump_on_overview(area, zoom, at);
                out.push(Request::FocusCanvas);
            }
            return true;
        }
        if !inner.contains(at) {
            return false;
        }
        match kind {
            MouseEventKind::ScrollUp => self.set_zoom(self.zoom.zoom_in()),
            MouseEventKind::ScrollDown => self.set_zoom(self.zoom.zoom_out(self.widest(room))),
            MouseEventKind::Down(MouseButton::Left) => {
                let Some(pixel) = self.pixel_at(inner, at) else {
                    return true;
                };
                self.cursor = pixel;
                out.push(Request::FocusCanvas);
                if let Zoom::Out(_) = self.zoom {
                    // A dot is many pixels: the click shows where, Space
                    // (or zooming in) places.
                    return true;
                }
                self.stroke = Some(Stroke {
                    last: pixel,
                    painted: HashSet::from([pixel]),
                });
                out.push(Request::Place(pixel));
            }
            MouseEventKind::Drag(MouseButton::Left) => self.drag(inner, at, out),
            MouseEventKind::Down(MouseButton::Right | MouseButton::Middle) => {
                if let Some(pixel) = self.pixel_at(inner, at) {
                    out.push(Request::Pick(pixel));
                }
            }
            _ => {}
        }
        true
    }

    /// The stroke goes on to the cell at `at`: every pixel on the line from
    /// the last one reached is painted, once each.
    fn drag(&mut self, inner: Rect, at: Position, out: &mut Vec<Request>) {
        let Some(view) = self.viewport(inner) else {
            return;
        };
        let Some(stroke) = &mut self.stroke else {
            return;
        };
        // A cell holds two dots and the mouse cannot say which is meant:
        // the one nearer where the stroke comes from, so a vertical stroke
        // leaves no gaps and a horizontal one stays on its row.
        let last_dot = view.zoom.dot_of(stroke.last.1);
        let upper = view.dot_at(at, false);
        let lower = view.dot_at(at, true);
        let (Some(upper), Some(lower)) = (upper, lower) else {
            return;
        };
        let last_row = last_dot.saturating_sub(view.origin.1);
        let dot = if last_row > upper.1 { lower } else { upper };
        let Some(target) = view.pixel(dot.0, dot.1) else {
            return;
        };
        for p in line(stroke.last, target) {
            if stroke.painted.insert(p) {
                out.push(Request::Paint(p));
            }
        }
        stroke.last = target;
        self.cursor = target;
    }

    fn jump_on_overview(&mut self, area: Rect, zoom: Zoom, at: Position) {
        let Some(size) = self.size() else {
            return;
        };
        let inner = Rect::new(area.x + 1, area.y + 1, area.width - 2, area.height - 2);
        let map = Viewport::new(zoom, size, (0, 0), inner);
        if let Some((dx, dy)) = map.dot_at(at, false)
            && let Some((x, y)) = map.pixel(dx, dy)
        {
            let half = zoom.block() / 2;
            self.go_to(u32::from(x + half), u32::from(y + half));
        }
    }

    fn move_cursor(&mut self, dx: i32, dy: i32) {
        let Some((w, h)) = self.size() else {
            return;
        };
        let clamp =
            |v: u16, d: i32, len: u16| (i32::from(v) + d).clamp(0, i32::from(len) - 1) as u16;
        self.cursor = (clamp(self.cursor.0, dx, w), clamp(self.cursor.1, dy, h));
    }

    /// Moves the view as little as needed to show the cursor in `inner`
    /// with a margin ahead of it, as an editor with `scrolloff` scrolls;
    /// or centres it after a zoom or a jump.
    pub fn follow(&mut self, inner: Rect) {
        let Some((w, h)) = self.size() else {
            self.origin = (0, 0);
            return;
        };
        let view = Viewport::new(self.zoom, (w, h), self.origin, inner);
        let (len_x, len_y) = (self.zoom.dots(w), self.zoom.dots(h));
        let (span_x, span_y) = (u32::from(view.area.width), 2 * u32::from(view.area.height));
        let (cx, cy) = (
            self.zoom.dot_of(self.cursor.0),
            self.zoom.dot_of(self.cursor.1),
        );
        let size = self.zoom.dot_span();
        // The last row of dots may be half a cell: round the length up.
        let len_y = len_y.next_multiple_of(2);
        let (x, y) = if std::mem::take(&mut self.recentre) {
            (
                centre(cx, cx + size, span_x, len_x),
                centre(cy, cy + size, span_y, len_y),
            )
        } else {
            (
                follow(self.origin.0, cx, cx + size, span_x, len_x),
                follow(self.origin.1, cy, cy + size, span_y, len_y),
            )
        };
        self.origin = (x, y / 2 * 2);
        // Rounding down to an even row may have hidden a cursor at the
        // bottom edge.
        if cy + size > self.origin.1 + span_y {
            self.origin.1 += 2;
        }
    }

    /// The pixel a click at `at` means. At 1:1 a cell shows two pixels and
    /// a click cannot tell which half was meant: it takes the upper one,
    /// and the lower one when the cursor is already on the upper one, so
    /// a second click on the same cell reaches it.
    pub fn pixel_at(&self, inner: Rect, at: Position) -> Option<(u16, u16)> {
        let view = self.viewport(inner)?;
        let (dx, dy) = view.dot_at(at, false)?;
        let upper = view.pixel(dx, dy)?;
        if upper == self.cursor
            && let Some(lower) = view.pixel(dx, dy + 1)
        {
            return Some(lower);
        }
        Some(upper)
    }
}

/// The pixels on the straight line from `a` to `b`, both included
/// (Bresenham's), so a fast drag that skips cells leaves no gaps.
pub fn line(a: (u16, u16), b: (u16, u16)) -> Vec<(u16, u16)> {
    let (mut x, mut y) = (i32::from(a.0), i32::from(a.1));
    let (x1, y1) = (i32::from(b.0), i32::from(b.1));
    let (dx, dy) = ((x1 - x).abs(), -(y1 - y).abs());
    let (sx, sy) = ((x1 - x).signum(), (y1 - y).signum());
    let mut err = dx + dy;
    let mut out = Vec::with_capacity((dx - dy) as usize + 1);
    loop {
        out.push((x as u16, y as u16));
        if (x, y) == (x1, y1) {
            return out;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

/// Re-exported for the drawing, which sizes its margin the same way.
pub use viewport::scrolloff;

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
        pane.follow(inner);
        pane.cursor = (40, 30);
        pane.follow(inner);
        // A quarter of the view stays ahead of the cursor.
        assert_eq!(pane.origin, (26, 16));
        assert_eq!(pane.pixel_at(inner, Position::new(1, 1)), Some((26, 16)));
        assert_eq!(pane.pixel_at(inner, Position::new(3, 2)), Some((28, 18)));
        // The border and beyond are not the canvas.
        assert_eq!(pane.pixel_at(inner, Position::new(0, 1)), None);
        assert_eq!(pane.pixel_at(inner, Position::new(21, 1)), None);
    }

    #[test]
    fn a_click_beside_a_small_canvas_misses_it() {
        let mut pane = pane(8, 6);
        let inner = Rect::new(1, 1, 20, 10);
        pane.follow(inner);
        // 8x6 at 1:1 is 8 columns and 3 rows, centred: x 7-14, y 4-6.
        let mut out = Vec::new();
        let click = MouseEventKind::Down(MouseButton::Left);
        assert!(pane.on_mouse(click, inner, (20, 10), Position::new(2, 4), &mut out));
        assert!(out.is_empty());
        pane.on_mouse(click, inner, (20, 10), Position::new(8, 6), &mut out);
        assert_eq!(out, [Request::FocusCanvas, Request::Place((1, 4))]);
    }

    #[test]
    fn keys_it_does_not_handle_are_passed_on() {
        let mut pane = pane(8, 6);
        let mut out = Vec::new();
        assert!(pane.on_action(Action::Move { dx: 9, dy: 1 }, None, (20, 10), &mut out));
        assert_eq!(pane.cursor, (7, 1));
        assert!(!pane.on_action(Action::NextColor, None, (20, 10), &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn zoomed_out_a_move_is_one_dot_and_the_zoom_stops_at_the_whole_canvas() {
        let mut pane = pane(1024, 1024);
        let room = (70, 26);
        let mut out = Vec::new();
        for _ in 0..10 {
            pane.on_action(Action::ZoomOut, None, room, &mut out);
        }
        assert_eq!(pane.zoom, Zoom::Out(32));
        pane.on_action(Action::Move { dx: 1, dy: 2 }, None, room, &mut out);
        assert_eq!(pane.cursor, (32, 64));
        pane.on_action(Action::ZoomIn, None, room, &mut out);
        assert_eq!(pane.zoom, Zoom::Out(16));
    }

    #[test]
    fn lines_have_no_gaps() {
        assert_eq!(line((0, 0), (3, 1)), [(0, 0), (1, 0), (2, 1), (3, 1)]);
        assert_eq!(line((2, 5), (2, 2)), [(2, 5), (2, 4), (2, 3), (2, 2)]);
        assert_eq!(line((4, 4), (4, 4)), [(4, 4)]);
    }

    #[test]
    fn block_colours_are_the_most_common_of_their_pixels() {
        let mut canvas = Canvas::from_snapshot(&snapshot(1, 64, 64, 0));
        let mut seq = 0;
        for x in 0..3 {
            for y in 0..2 {
                seq += 1;
                let name = std::sync::Arc::from("bob");
                canvas.apply(&Pixel {
                    seq,
                    x,
                    y,
                    color: 5,
                    name,
                });
            }
        }
        assert_eq!(canvas.block(0, 0, 2), Some(5));
        assert_eq!(canvas.block(0, 0, 4), Some(0), "6 red of 16");
        assert_eq!(canvas.block(2, 0, 2), Some(0), "a tie goes to white");
        assert_eq!(canvas.block(0, 0, 64), Some(0));
    }
}
