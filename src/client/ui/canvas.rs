//! The canvas pane drawn: the pixels in view as dots (two to a cell,
//! `▀`), zoomed in, at 1:1 or out (each dot the most common colour of its
//! block), the pixels waiting for the server and the template's ghost over
//! them, a cursor in a colour that stands out from its pixel and every
//! neighbour, rulers on the border that point at it, and the overview.

use std::collections::HashMap;

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Margin, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, BorderType, Paragraph, Widget, Wrap};

use super::{ACCENT, focus_style};
use crate::client::app::canvas::{Canvas, CanvasPane};
use crate::client::app::palette::Palette;
use crate::client::app::template::Template;
use crate::client::app::viewport::{Viewport, Zoom};
use crate::client::color::ColorMode;

/// The canvas pane with what it is drawn with.
pub struct CanvasView<'a> {
    /// The pane.
    pub pane: &'a CanvasPane,
    /// The colours.
    pub palette: &'a Palette,
    /// The template, when one is loaded.
    pub template: Option<&'a Template>,
    /// Keys go to drawing.
    pub focused: bool,
    /// What to say while there is no canvas.
    pub waiting: String,
}

/// Colours the cursor may take: the extremes of each channel, so one of
/// them is always far from any few colours around it.
const CURSOR_COLOURS: [[u8; 3]; 8] = [
    [0, 0, 0],
    [255, 255, 255],
    [255, 0, 255],
    [0, 255, 255],
    [255, 255, 0],
    [0, 0, 255],
    [255, 0, 0],
    [0, 255, 0],
];

pub use crate::client::color::distance;

/// The cursor's colour: of [`CURSOR_COLOURS`], the one farthest from the
/// nearest of `around` (the cursor pixel and its neighbours as drawn), so
/// it never melts into its surroundings, whatever they are.
pub fn cursor_colour(around: &[[u8; 3]]) -> [u8; 3] {
    *CURSOR_COLOURS
        .iter()
        .max_by_key(|&&c| around.iter().map(|&a| distance(a, c)).min().unwrap_or(0))
        .expect("candidates")
}

/// A half blend of `a` toward `b`, for the template's ghost.
fn blend(a: [u8; 3], b: [u8; 3]) -> [u8; 3] {
    [0, 1, 2].map(|i| ((u16::from(a[i]) + u16::from(b[i])) / 2) as u8)
}

/// What one dot shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dot {
    /// Nothing: outside the canvas.
    None,
    /// A colour.
    Rgb([u8; 3]),
}

impl Widget for CanvasView<'_> {
    /// Draws the block in `area` and the canvas inside its border.
    fn render(self, area: Rect, buf: &mut Buffer) {
        let block = Block::bordered()
            .border_type(BorderType::Rounded)
            .border_style(focus_style(self.focused));
        let inner = area.inner(Margin::new(1, 1));
        let (Some(canvas), Some(view)) = (&self.pane.pixels, self.pane.viewport(inner)) else {
            block.title(" canvas ").render(area, buf);
            let y = inner.y + inner.height / 2;
            Paragraph::new(self.waiting)
                .alignment(Alignment::Center)
                .wrap(Wrap { trim: true })
                .render(
                    Rect::new(inner.x, y, inner.width, inner.height - (y - inner.y)),
                    buf,
                );
            return;
        };
        let (left, right) = self.titles(canvas, area.width);
        block
            .title(left)
            .title(Line::from(right).right_aligned())
            .render(area, buf);
        let mut dots = self.dots(canvas, &view);
        let cursor_cells = self.draw_cursor(&view, &mut dots);
        put_dots(buf, &view, &dots, self.palette);
        if self.palette.mode == ColorMode::NoColor {
            for (x, y) in cursor_cells {
                buf[(x, y)].set_style(Style::new().add_modifier(Modifier::REVERSED));
            }
        }
        self.rulers(area, &view, buf);
        if let Some((map_area, zoom)) = self.pane.overview_area(inner) {
            self.overview(canvas, map_area, zoom, &view, buf);
        }
    }
}

impl CanvasView<'_> {
    /// The titles: size and zoom at the left, the cursor and the colour
    /// drawn there at the right; shortened to fit `width`.
    fn titles(&self, canvas: &Canvas, width: u16) -> (String, String) {
        let (cx, cy) = self.pane.cursor;
        let under = self.pane.shown(cx, cy).unwrap_or(0);
        let zoom = self.pane.zoom.label();
        let size = format!("{}x{}", canvas.width, canvas.height);
        let lefts = [
            format!(" canvas {size} · {zoom} "),
            format!(" {size} · {zoom} "),
            format!(" {zoom} "),
        ];
        let rights = [
            format!(" ({cx},{cy}) {} ", self.palette.name(under)),
            format!(" ({cx},{cy}) "),
        ];
        let room = usize::from(width.saturating_sub(2));
        for right in &rights {
            for left in &lefts {
                if left.chars().count() + right.chars().count() <= room {
                    return (left.clone(), right.clone());
                }
            }
        }
        (String::new(), rights[1].clone())
    }

    /// Every dot in view, row by row: the canvas (and the pixels waiting
    /// for the server) with the template's ghost over it.
    fn dots(&self, canvas: &Canvas, view: &Viewport) -> Vec<Dot> {
        let cols = usize::from(view.area.width);
        let rows = 2 * usize::from(view.area.height);
        let mut dots = vec![Dot::None; cols * rows];
        let palette = self.palette;
        let pending: HashMap<(u16, u16), u8> = self
            .pane
            .pending
            .iter()
            .map(|p| ((p.x, p.y), p.color))
            .collect();
        let side = view.zoom.block();
        for dy in 0..rows {
            for dx in 0..cols {
                let Some((x, y)) = view.pixel(dx as u32, dy as u32) else {
                    continue;
                };
                let index = match view.zoom {
                    Zoom::In(_) => pending.get(&(x, y)).copied().or_else(|| canvas.get(x, y)),
                    Zoom::Out(_) => canvas.block(x, y, side),
                };
                if let Some(i) = index {
                    dots[dy * cols + dx] = Dot::Rgb(palette.rgb(i));
                }
            }
        }
        if let Some(template) = self.template.filter(|t| t.ghost) {
            self.ghost(template, view, &mut dots);
        }
        dots
    }

    /// The template's ghost: each dot whose pixels the template wants
    /// otherwise shows half the colour it wants.
    fn ghost(&self, template: &Template, view: &Viewport, dots: &mut [Dot]) {
        let cols = usize::from(view.area.width);
        let side = view.zoom.block();
        for (i, dot) in dots.iter_mut().enumerate() {
            let Dot::Rgb(now) = *dot else { continue };
            let Some((x, y)) = view.pixel((i % cols) as u32, (i / cols) as u32) else {
                continue;
            };
            let wanted = match view.zoom {
                Zoom::In(_) => template.wants(x, y),
                Zoom::Out(_) => template.wants_in_block(x, y, side),
            };
            if let Some(w) = wanted {
                let rgb = self.palette.rgb(w);
                if rgb != now {
                    *dot = Dot::Rgb(blend(now, rgb));
                }
            }
        }
    }

    /// Draws the cursor into `dots` and returns the cells it is in. One
    /// dot is filled with [`cursor_colour`]; a pixel of three dots or more
    /// gets an outline instead, so its own colour still shows inside.
    fn draw_cursor(&self, view: &Viewport, dots: &mut [Dot]) -> Vec<(u16, u16)> {
        let (cx, cy) = self.pane.cursor;
        let Some((xs, ys)) = view.dots_of(cx, cy) else {
            return Vec::new();
        };
        let cols = usize::from(view.area.width) as u32;
        let rows = dots.len() as u32 / cols.max(1);
        let at = |x: u32, y: u32| (y * cols + x) as usize;
        // The colours around, as drawn: the pixel's own and a ring around.
        let mut around = Vec::new();
        for y in ys.start.saturating_sub(1)..(ys.end + 1).min(rows) {
            for x in xs.start.saturating_sub(1)..(xs.end + 1).min(cols) {
                if let Dot::Rgb(rgb) = dots[at(x, y)] {
                    around.push(rgb);
                }
            }
        }
        let colour = Dot::Rgb(cursor_colour(&around));
        let outline = xs.len() >= 3 && ys.len() >= 3;
        let mut cells = Vec::new();
        for y in ys.clone() {
            for x in xs.clone() {
                let edge = x == xs.start || x + 1 == xs.end || y == ys.start || y + 1 == ys.end;
                if !outline || edge {
                    dots[at(x, y)] = colour;
                }
                let cell = (view.area.x + x as u16, view.area.y + (y / 2) as u16);
                if !cells.contains(&cell) {
                    cells.push(cell);
                }
            }
        }
        cells
    }

    /// Rulers on the border point at the cursor's column and row, so it is
    /// easy to find on any picture.
    fn rulers(&self, area: Rect, view: &Viewport, buf: &mut Buffer) {
        let ruler = Style::new().fg(ACCENT).add_modifier(Modifier::BOLD);
        let (cx, cy) = self.pane.cursor;
        if let Some((xs, ys)) = view.dots_of(cx, cy) {
            let x = view.area.x + ((xs.start + xs.end - 1) / 2) as u16;
            let y = view.area.y + ((ys.start + ys.end - 1) / 4) as u16;
            buf[(x, area.bottom() - 1)].set_char('▲').set_style(ruler);
            buf[(area.x, y)].set_char('▶').set_style(ruler);
        }
    }

    /// The overview: the whole canvas, small, in a box at the pane's
    /// top-right, the part in view marked on its border and the cursor as
    /// a dot.
    fn overview(&self, canvas: &Canvas, area: Rect, zoom: Zoom, view: &Viewport, buf: &mut Buffer) {
        let block = Block::bordered()
            .border_type(BorderType::Plain)
            .border_style(Style::new().fg(Color::DarkGray));
        let inner = block.inner(area);
        block.render(area, buf);
        let map = Viewport::new(zoom, (canvas.width, canvas.height), (0, 0), inner);
        let mut dots =
            vec![Dot::None; usize::from(map.area.width) * 2 * usize::from(map.area.height)];
        let cols = usize::from(map.area.width);
        for (i, dot) in dots.iter_mut().enumerate() {
            if let Some((x, y)) = map.pixel((i % cols) as u32, (i / cols) as u32)
                && let Some(c) = canvas.block(x, y, zoom.block())
            {
                *dot = Dot::Rgb(self.palette.rgb(c));
            }
        }
        let (cx, cy) = self.pane.cursor;
        if let Some((xs, ys)) = map.dots_of(cx, cy) {
            let i = ys.start as usize * cols + xs.start as usize;
            let around = match dots[i] {
                Dot::Rgb(rgb) => vec![rgb],
                Dot::None => Vec::new(),
            };
            dots[i] = Dot::Rgb(cursor_colour(&around));
        }
        put_dots(buf, &map, &dots, self.palette);
        // The part in view, as thick marks on the box's top and left sides.
        let ((x0, x1), (y0, y1)) = view.pixels_in_view();
        let mark = Style::new().fg(ACCENT).add_modifier(Modifier::BOLD);
        let (k, m) = (u32::from(zoom.block()), map.area);
        for x in x0 / k..x1.div_ceil(k).min(u32::from(m.width)) {
            buf[(m.x + x as u16, area.y)].set_char('━').set_style(mark);
        }
        for y in y0 / k / 2..(y1.div_ceil(k).div_ceil(2)).min(u32::from(m.height)) {
            buf[(area.x, m.y + y as u16)].set_char('┃').set_style(mark);
        }
    }
}

/// Writes `dots` (two rows of dots per row of cells) into `view`'s cells.
fn put_dots(buf: &mut Buffer, view: &Viewport, dots: &[Dot], palette: &Palette) {
    let cols = usize::from(view.area.width);
    let mono = palette.mode == ColorMode::NoColor;
    for row in 0..view.area.height {
        for col in 0..view.area.width {
            let top = dots[2 * usize::from(row) * cols + usize::from(col)];
            let bottom = dots[(2 * usize::from(row) + 1) * cols + usize::from(col)];
            let cell = &mut buf[(view.area.x + col, view.area.y + row)];
            if mono {
                // No colours: ink for the dark dots, paper for the light.
                let ink = |d: Dot| matches!(d, Dot::Rgb(rgb) if dark(rgb));
                let glyph = match (ink(top), ink(bottom)) {
                    (true, true) => '█',
                    (true, false) => '▀',
                    (false, true) => '▄',
                    (false, false) => ' ',
                };
                cell.set_char(glyph);
                continue;
            }
            match (top, bottom) {
                (Dot::Rgb(t), Dot::Rgb(b)) => cell
                    .set_char('▀')
                    .set_fg(palette.color(t))
                    .set_bg(palette.color(b)),
                (Dot::Rgb(t), Dot::None) => cell
                    .set_char('▀')
                    .set_fg(palette.color(t))
                    .set_bg(Color::Reset),
                (Dot::None, _) => cell.set_char(' ').set_bg(Color::Reset),
            };
        }
    }
}

/// True for colours that read as ink on paper.
fn dark([r, g, b]: [u8; 3]) -> bool {
    299 * u32::from(r) + 587 * u32::from(g) + 114 * u32::from(b) < 128_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::PALETTE;

    #[test]
    fn the_cursor_stands_out_from_any_pixel_and_neighbours() {
        // Every pair of palette colours as pixel and neighbour: the cursor
        // is far from both.
        for a in PALETTE {
            for b in PALETTE {
                let c = cursor_colour(&[a.rgb, b.rgb]);
                let nearest = distance(c, a.rgb).min(distance(c, b.rgb));
                assert!(nearest > 40_000, "{} beside {}: {c:?}", a.name, b.name);
            }
        }
        // The bug report's case: red under the cursor, white around.
        let red = [0xE5, 0, 0];
        let c = cursor_colour(&[red, [255; 3], [255; 3]]);
        assert_ne!(c, [255; 3]);
        assert!(distance(c, red) > 40_000);
    }
}
