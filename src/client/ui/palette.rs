//! The palette bar drawn: each colour with its key, the selected one
//! marked and named, in the slots the state hit-tests clicks against.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::ACCENT;
use crate::client::app::palette::{KEYED, Palette, SLOT, slot, slot_width};

impl Widget for &Palette {
    fn render(self, bar: Rect, buf: &mut Buffer) {
        let w = slot_width(bar);
        for (i, swatch) in self.swatches.iter().enumerate().take(KEYED) {
            let slot = slot(bar, i);
            if slot.width < w {
                break;
            }
            let selected = i == usize::from(self.selected);
            let key = char::from_digit(i as u32, 16).expect("index below 16");
            let key_style = match (selected, w) {
                (false, _) => Style::new().fg(Color::DarkGray),
                (true, SLOT) => Style::new().fg(ACCENT).add_modifier(Modifier::BOLD),
                (true, _) => Style::new()
                    .fg(ACCENT)
                    .add_modifier(Modifier::BOLD | Modifier::REVERSED),
            };
            let mut x = slot.x;
            if w == SLOT {
                let marker = if selected { '▸' } else { ' ' };
                buf[(x, slot.y)].set_char(marker).set_style(key_style);
                x += 1;
            }
            buf[(x, slot.y)].set_char(key).set_style(key_style);
            for dx in x + 1..slot.right() {
                buf[(dx, slot.y)]
                    .set_char(' ')
                    .set_bg(self.color(swatch.rgb));
            }
        }
        let shown = self.swatches.len().min(KEYED);
        let after = slot(bar, shown.saturating_sub(1)).right() + 1;
        if after < bar.right() {
            let name = Line::from(vec![
                Span::styled(self.name(self.selected).to_string(), Style::new().bold()),
                Span::styled("  [ ] 0-f", Style::new().fg(Color::DarkGray)),
            ]);
            name.render(Rect::new(after, bar.y, bar.right() - after, 1), buf);
        }
    }
}
