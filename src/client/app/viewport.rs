//! Zoom and the part of the canvas in view, as plain arithmetic the state
//! (scrolling, clicks) and the drawing share.
//!
//! The screen unit is the *dot*: half a terminal cell, upper or lower, so
//! about square. A cell shows two dots (`▀`: the upper one in the
//! foreground colour, the lower one in the background). At 1:1 a dot is
//! a pixel; zoomed in, a pixel is `m` x `m` dots; zoomed out, a dot stands
//! for `k` x `k` pixels (`k` a power of two, so dots line up with the
//! canvas's block summaries).

use ratatui::layout::{Position, Rect};

/// The most dots a pixel's side is drawn with.
pub const MAX_SCALE: u16 = 16;

/// How pixels map to dots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zoom {
    /// Each pixel is `m` x `m` dots (`In(1)` is 1:1).
    In(u16),
    /// Each dot shows `k` x `k` pixels, the most common colour among
    /// them (`k` is 2, 4, 8, ...).
    Out(u16),
}

impl Default for Zoom {
    fn default() -> Self {
        Zoom::In(1)
    }
}

impl Zoom {
    /// How many dots `pixels` pixels take along one side.
    pub fn dots(self, pixels: u16) -> u32 {
        match self {
            Zoom::In(m) => u32::from(pixels) * u32::from(m),
            Zoom::Out(k) => u32::from(pixels).div_ceil(u32::from(k)),
        }
    }

    /// The first dot of pixel `p` along one side.
    pub fn dot_of(self, p: u16) -> u32 {
        match self {
            Zoom::In(m) => u32::from(p) * u32::from(m),
            Zoom::Out(k) => u32::from(p) / u32::from(k),
        }
    }

    /// The dots pixel `p` covers along one side (one, zoomed out).
    pub fn dot_span(self) -> u32 {
        match self {
            Zoom::In(m) => u32::from(m),
            Zoom::Out(_) => 1,
        }
    }

    /// The first pixel dot `d` shows along one side.
    pub fn pixel_of(self, d: u32) -> u32 {
        match self {
            Zoom::In(m) => d / u32::from(m),
            Zoom::Out(k) => d * u32::from(k),
        }
    }

    /// Pixels per dot along one side (1 at 1:1 and zoomed in).
    pub fn block(self) -> u16 {
        match self {
            Zoom::In(_) => 1,
            Zoom::Out(k) => k,
        }
    }

    /// One step closer.
    pub fn zoom_in(self) -> Zoom {
        match self {
            Zoom::In(m) => Zoom::In((m + 1).min(MAX_SCALE)),
            Zoom::Out(2) => Zoom::In(1),
            Zoom::Out(k) => Zoom::Out(k / 2),
        }
    }

    /// One step further away, but never further than `widest`.
    pub fn zoom_out(self, widest: Zoom) -> Zoom {
        let next = match self {
            Zoom::In(1) => Zoom::Out(2),
            Zoom::In(m) => Zoom::In(m - 1),
            Zoom::Out(k) => Zoom::Out(k.saturating_mul(2)),
        };
        if next.closer_than(widest) {
            next
        } else {
            widest
        }
    }

    /// True when this shows pixels larger than `other` does.
    pub fn closer_than(self, other: Zoom) -> bool {
        self.rank() > other.rank()
    }

    fn rank(self) -> i32 {
        match self {
            Zoom::In(m) => i32::from(m),
            Zoom::Out(k) => -i32::from(k),
        }
    }

    /// The scale as people write it: `1:1`, `3:1` (zoomed in), `1:8`.
    pub fn label(self) -> String {
        match self {
            Zoom::In(m) => format!("{m}:1"),
            Zoom::Out(k) => format!("1:{k}"),
        }
    }

    /// The closest zoom that shows a `width` x `height` canvas whole in
    /// `room` cells: zoomed in as far as it fits (up to [`MAX_SCALE`]),
    /// or out by the smallest power of two that fits.
    pub fn fit(width: u16, height: u16, room: (u16, u16)) -> Zoom {
        let (cols, rows) = (u32::from(room.0.max(1)), u32::from(room.1.max(1)) * 2);
        let (w, h) = (u32::from(width.max(1)), u32::from(height.max(1)));
        let m = (cols / w).min(rows / h);
        if m >= 1 {
            return Zoom::In(m.min(u32::from(MAX_SCALE)) as u16);
        }
        let mut k = 2u16;
        while Zoom::Out(k).dots(width) > cols || Zoom::Out(k).dots(height) > rows {
            k = k.saturating_mul(2);
            if k == u16::MAX {
                break;
            }
        }
        Zoom::Out(k)
    }
}

/// Where the canvas is drawn and which part of it: the cells it takes
/// (centred in the pane when it is smaller) and the dot at their
/// top-left corner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewport {
    /// The scale.
    pub zoom: Zoom,
    /// The cells that show the canvas.
    pub area: Rect,
    /// The dot at `area`'s top-left; its row is even, so a cell's two dots
    /// are always the same pair.
    pub origin: (u32, u32),
    /// The canvas size in pixels.
    pub canvas: (u16, u16),
}

impl Viewport {
    /// The view of a `canvas` at `zoom` from `origin`, in the pane's
    /// `inner` cells.
    pub fn new(zoom: Zoom, canvas: (u16, u16), origin: (u32, u32), inner: Rect) -> Self {
        let cols = zoom.dots(canvas.0).min(u32::from(inner.width)) as u16;
        let rows = zoom.dots(canvas.1).div_ceil(2).min(u32::from(inner.height)) as u16;
        let area = Rect::new(
            inner.x + (inner.width - cols) / 2,
            inner.y + (inner.height - rows) / 2,
            cols,
            rows,
        );
        Self {
            zoom,
            area,
            origin,
            canvas,
        }
    }

    /// The pixel dot `(dx, dy)` (screen-relative) shows, if it shows one:
    /// the top-left one of its block zoomed out.
    pub fn pixel(&self, dx: u32, dy: u32) -> Option<(u16, u16)> {
        let x = self.zoom.pixel_of(self.origin.0 + dx);
        let y = self.zoom.pixel_of(self.origin.1 + dy);
        (x < u32::from(self.canvas.0) && y < u32::from(self.canvas.1))
            .then_some((x as u16, y as u16))
    }

    /// The dot under the screen cell `at`, relative to the view, upper or
    /// lower half as `lower` says.
    pub fn dot_at(&self, at: Position, lower: bool) -> Option<(u32, u32)> {
        if !self.area.contains(at) {
            return None;
        }
        let dx = u32::from(at.x - self.area.x);
        let dy = 2 * u32::from(at.y - self.area.y) + u32::from(lower);
        Some((dx, dy))
    }

    /// The screen rectangle of dots the pixel `(x, y)` covers, as
    /// relative dot ranges, when any of it is in view.
    pub fn dots_of(&self, x: u16, y: u16) -> Option<(std::ops::Range<u32>, std::ops::Range<u32>)> {
        let span = self.zoom.dot_span();
        let x0 = self.zoom.dot_of(x);
        let y0 = self.zoom.dot_of(y);
        let (w, h) = (u32::from(self.area.width), 2 * u32::from(self.area.height));
        let xs = x0.max(self.origin.0)..(x0 + span).min(self.origin.0 + w);
        let ys = y0.max(self.origin.1)..(y0 + span).min(self.origin.1 + h);
        (!xs.is_empty() && !ys.is_empty()).then(|| {
            (
                xs.start - self.origin.0..xs.end - self.origin.0,
                ys.start - self.origin.1..ys.end - self.origin.1,
            )
        })
    }

    /// The pixels in view, as `[x0, x1) x [y0, y1)`.
    pub fn pixels_in_view(&self) -> ((u32, u32), (u32, u32)) {
        let (w, h) = (u32::from(self.area.width), 2 * u32::from(self.area.height));
        let x0 = self.zoom.pixel_of(self.origin.0);
        let y0 = self.zoom.pixel_of(self.origin.1);
        let x1 = self
            .zoom
            .pixel_of(self.origin.0 + w)
            .min(u32::from(self.canvas.0));
        let y1 = self
            .zoom
            .pixel_of(self.origin.1 + h)
            .min(u32::from(self.canvas.1));
        ((x0, x1.max(x0)), (y0, y1.max(y0)))
    }

    /// True when part of the canvas is out of view.
    pub fn cropped(&self) -> bool {
        self.zoom.dots(self.canvas.0) > u32::from(self.area.width)
            || self.zoom.dots(self.canvas.1) > 2 * u32::from(self.area.height)
    }
}

/// The dots an editor-like view keeps between the cursor and the edge of
/// a `span`-dot view (vim's `scrolloff`): a quarter of it, so what lies
/// ahead shows before the cursor gets there.
pub fn scrolloff(span: u32) -> u32 {
    span / 4
}

/// The new offset of a `span`-dot view over `len` dots so that the
/// cursor's dots `[c0, c1)` are in it with [`scrolloff`] dots to spare
/// where the canvas has them, moving as little as possible.
pub fn follow(offset: u32, c0: u32, c1: u32, span: u32, len: u32) -> u32 {
    if span == 0 || len <= span {
        return 0;
    }
    let margin = scrolloff(span).min(span.saturating_sub(c1 - c0) / 2);
    let mut o = offset.min(len - span);
    if c0 < o + margin {
        o = c0.saturating_sub(margin);
    } else if c1 + margin > o + span {
        o = c1 + margin - span;
    }
    o.min(len - span)
}

/// The offset of a `span`-dot view over `len` dots with the dots
/// `[c0, c1)` in its middle, as far as the canvas allows.
pub fn centre(c0: u32, c1: u32, span: u32, len: u32) -> u32 {
    if len <= span {
        return 0;
    }
    ((c0 + c1) / 2).saturating_sub(span / 2).min(len - span)
}

/// The overview's size in cells for a `width` x `height` canvas: at most
/// `most` cells a side (half as many rows), zoomed out by a power of two.
pub fn overview_zoom(width: u16, height: u16, most: (u16, u16)) -> Zoom {
    match Zoom::fit(width, height, most) {
        Zoom::In(_) => Zoom::In(1),
        out => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zoom_steps_in_and_out_and_stops_at_the_widest() {
        let widest = Zoom::Out(16);
        assert_eq!(Zoom::In(1).zoom_out(widest), Zoom::Out(2));
        assert_eq!(Zoom::Out(8).zoom_out(widest), Zoom::Out(16));
        assert_eq!(Zoom::Out(16).zoom_out(widest), Zoom::Out(16));
        assert_eq!(Zoom::Out(2).zoom_in(), Zoom::In(1));
        assert_eq!(Zoom::In(3).zoom_in(), Zoom::In(4));
        assert_eq!(Zoom::In(MAX_SCALE).zoom_in(), Zoom::In(MAX_SCALE));
        assert_eq!(Zoom::In(3).zoom_out(Zoom::In(2)), Zoom::In(2));
        assert_eq!(Zoom::In(2).zoom_out(Zoom::In(2)), Zoom::In(2));
        assert_eq!(
            (Zoom::In(1).label(), Zoom::Out(8).label()),
            ("1:1".into(), "1:8".into())
        );
    }

    #[test]
    fn fit_scales_small_canvases_up_and_large_ones_down_by_powers_of_two() {
        // 66 columns and 24 rows (48 dots): a 16x16 canvas at 3 dots a pixel.
        assert_eq!(Zoom::fit(16, 16, (66, 24)), Zoom::In(3));
        assert_eq!(Zoom::fit(64, 64, (90, 36)), Zoom::In(1));
        // 1024 pixels in 70 columns: 16 per dot gives 64.
        assert_eq!(Zoom::fit(1024, 1024, (70, 26)), Zoom::Out(32));
        assert_eq!(Zoom::fit(1024, 1024, (70, 40)), Zoom::Out(16));
        assert_eq!(Zoom::fit(4096, 4096, (70, 40)), Zoom::Out(64));
        assert_eq!(Zoom::fit(1, 1, (200, 100)), Zoom::In(MAX_SCALE));
    }

    #[test]
    fn follow_keeps_a_margin_ahead_of_the_cursor() {
        // A 40-dot view over 1000: the margin is 10.
        assert_eq!(follow(0, 29, 30, 40, 1000), 0);
        assert_eq!(follow(0, 30, 31, 40, 1000), 1, "ten dots stay ahead");
        assert_eq!(follow(100, 105, 106, 40, 1000), 95);
        // At the canvas's edges the view stops.
        assert_eq!(follow(500, 999, 1000, 40, 1000), 960);
        assert_eq!(follow(500, 0, 1, 40, 1000), 0);
        // A canvas smaller than the view never scrolls.
        assert_eq!(follow(7, 20, 21, 40, 30), 0);
        assert_eq!(centre(500, 501, 40, 1000), 480);
        assert_eq!(centre(990, 991, 40, 1000), 960);
    }

    #[test]
    fn a_viewport_centres_a_small_canvas_and_maps_cells_to_pixels() {
        let inner = Rect::new(1, 1, 60, 20);
        let v = Viewport::new(Zoom::In(2), (16, 8), (0, 0), inner);
        assert_eq!(v.area, Rect::new(15, 7, 32, 8));
        assert_eq!(v.dot_at(Position::new(15, 7), false), Some((0, 0)));
        assert_eq!(v.pixel(3, 5), Some((1, 2)));
        assert_eq!(v.dot_at(Position::new(14, 7), false), None);
        let out = Viewport::new(Zoom::Out(4), (1024, 1024), (10, 20), inner);
        assert_eq!(out.pixel(1, 1), Some((44, 84)));
        assert!(out.cropped());
        assert_eq!(out.dots_of(44, 84), Some((1..2, 1..2)));
        assert_eq!(out.dots_of(0, 0), None, "out of view");
    }
}
