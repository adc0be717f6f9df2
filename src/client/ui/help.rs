//! The help overlay: every key from the one key table, the mouse, the
//! colours and the chat commands.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph, Widget};

use super::{ACCENT, centered};
use crate::client::app::palette::{KEYED, Palette};
use crate::client::keys;

/// The help, drawn centred over the screen: two columns where they fit,
/// else one, scrolled by the state's [`App::help_scroll`].
///
/// [`App::help_scroll`]: crate::client::app::App::help_scroll
pub struct Help<'a> {
    /// The colours it lists.
    pub palette: &'a Palette,
    /// Lines scrolled past.
    pub scroll: u16,
}

impl Widget for Help<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (left, right) = self.columns();
        let two = area.width >= 2 * COLUMN + 4;
        let (left, right) = if two {
            (left, right)
        } else {
            // One column: everything under each other, scrolled.
            (left.into_iter().chain(right).collect(), Vec::new())
        };
        let tall = left.len().max(right.len()) as u16;
        let width = if two { 2 * COLUMN + 2 } else { COLUMN + 2 };
        let popup = centered(area, width, tall + 2);
        let visible = popup.height.saturating_sub(2);
        let scroll = self.scroll.min(tall.saturating_sub(visible));
        let more = tall > visible;
        Clear.render(popup, buf);
        let hint = if more {
            " ↓↑ scroll · other keys close "
        } else {
            " any key closes "
        };
        let block = Block::bordered()
            .border_type(BorderType::Rounded)
            .border_style(Style::new().fg(ACCENT))
            .title(" keys ")
            .title(Line::from(hint).right_aligned());
        let inner = block.inner(popup);
        block.render(popup, buf);
        let [l, r] = Layout::horizontal([Constraint::Length(COLUMN), Constraint::Fill(1)])
            .spacing(1)
            .areas(inner);
        let shown = |lines: Vec<Line<'static>>| -> Vec<Line<'static>> {
            lines.into_iter().skip(usize::from(scroll)).collect()
        };
        Paragraph::new(shown(left)).render(if two { l } else { inner }, buf);
        if two {
            Paragraph::new(Text::from(shown(right))).render(r, buf);
        }
    }
}

/// The width of one column of the help.
const COLUMN: u16 = 48;

impl Help<'_> {
    /// The help's two columns: the drawing keys, then the rest.
    fn columns(&self) -> (Vec<Line<'static>>, Vec<Line<'static>>) {
        let head = |s: &'static str| Line::styled(s, Style::new().fg(ACCENT).bold());
        let row = |keys: &str, help: &str| {
            Line::from(vec![
                Span::styled(format!("{keys:<16}"), Style::new().bold()),
                Span::raw(help.to_string()),
            ])
        };
        let mut left = vec![head("Drawing")];
        left.extend(
            keys::DRAWING
                .iter()
                .chain(keys::ANYWHERE)
                .map(|r| row(r.keys, r.help)),
        );
        let mut right = vec![head("Chat input")];
        right.extend(keys::CHATTING.iter().map(|r| row(r.keys, r.help)));
        right.push(head("Mouse"));
        right.extend(keys::MOUSE.iter().map(|(k, h)| row(k, h)));
        right.push(head("Colours"));
        let swatches = &self.palette.swatches;
        let half = swatches.len().min(KEYED).div_ceil(2);
        for i in 0..half {
            let mut spans = Vec::new();
            for j in [i, i + half] {
                let Some(swatch) = swatches.get(j).filter(|_| j < KEYED) else {
                    continue;
                };
                let key = char::from_digit(j as u32, 16).expect("index below 16");
                spans.push(Span::styled(format!("{key} "), Style::new().bold()));
                spans.push(Span::styled(
                    "  ",
                    Style::new().bg(self.palette.color(swatch.rgb)),
                ));
                spans.push(Span::raw(format!(" {:<10}", swatch.name)));
            }
            right.push(Line::from(spans));
        }
        right.push(head("Chat commands"));
        right.extend(keys::COMMANDS.iter().map(|(k, h)| row(k, h)));
        right.push(Line::styled(
            "Offline, placed pixels wait for the reconnect.",
            Style::new().fg(Color::DarkGray),
        ));
        (left, right)
    }
}
