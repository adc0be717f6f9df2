//! The canvas pane drawn: pixels as half blocks, the pixels waiting for the
//! server drawn over them, the cursor pixel in a colour that stands out,
//! and rulers on the border that point at it.

use std::collections::HashMap;

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Margin, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, BorderType, Paragraph, Widget, Wrap};

use super::{ACCENT, focus_style};
use crate::client::app::canvas::CanvasPane;
use crate::client::app::palette::Palette;

/// The canvas pane with what it is drawn with.
pub struct CanvasView<'a> {
    /// The pane.
    pub pane: &'a CanvasPane,
    /// The colours.
    pub palette: &'a Palette,
    /// Keys go to drawing.
    pub focused: bool,
    /// What to say while there is no canvas.
    pub waiting: String,
}

/// A colour that stands out on `rgb`: black on light colours, white on
/// dark ones. The cursor pixel is drawn in it.
pub fn contrast([r, g, b]: [u8; 3]) -> [u8; 3] {
    let luma = 299 * u32::from(r) + 587 * u32::from(g) + 114 * u32::from(b);
    if luma > 140_000 {
        [0, 0, 0]
    } else {
        [255, 255, 255]
    }
}

impl Widget for CanvasView<'_> {
    /// Draws the block in `area` and the pixels inside its border.
    fn render(self, area: Rect, buf: &mut Buffer) {
        let mut block = Block::bordered()
            .border_type(BorderType::Rounded)
            .border_style(focus_style(self.focused));
        let inner = area.inner(Margin::new(1, 1));
        let Some(canvas) = &self.pane.pixels else {
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
        let palette = self.palette;
        let (cx, cy) = self.pane.cursor;
        let under = canvas.get(cx, cy).unwrap_or(0);
        block = block
            .title(format!(" canvas {}x{} ", canvas.width, canvas.height))
            .title(Line::from(format!(" ({cx},{cy}) {} ", palette.name(under))).right_aligned());
        block.render(area, buf);

        let (vx, vy) = self.pane.view;
        let pending: HashMap<(u16, u16), u8> = self
            .pane
            .pending
            .iter()
            .map(|p| ((p.x, p.y), p.color))
            .collect();
        let pixel = |x: u16, y: u16| -> Option<Color> {
            let index = pending.get(&(x, y)).copied().or_else(|| canvas.get(x, y))?;
            let rgb = palette.rgb(index);
            let rgb = if (x, y) == self.pane.cursor {
                contrast(rgb)
            } else {
                rgb
            };
            Some(palette.color(rgb))
        };
        for row in 0..inner.height {
            for col in 0..inner.width {
                let (x, y) = (vx + col, vy + 2 * row);
                let cell = &mut buf[(inner.x + col, inner.y + row)];
                match (pixel(x, y), pixel(x, y + 1)) {
                    (Some(top), Some(bottom)) => cell.set_char('▀').set_fg(top).set_bg(bottom),
                    (Some(top), None) => cell.set_char('▀').set_fg(top).set_bg(Color::Reset),
                    (None, _) => cell.set_char(' ').set_bg(Color::Reset),
                };
            }
        }
        // Rulers on the border point at the cursor's column and row, so it
        // is easy to find on any picture.
        let ruler = Style::new().fg(ACCENT).add_modifier(Modifier::BOLD);
        if (vx..vx + inner.width).contains(&cx) {
            buf[(inner.x + cx - vx, area.bottom() - 1)]
                .set_char('▲')
                .set_style(ruler);
        }
        if (vy / 2..vy / 2 + inner.height).contains(&(cy / 2)) {
            buf[(area.x, inner.y + cy / 2 - vy / 2)]
                .set_char('▶')
                .set_style(ruler);
        }
    }
}
