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

/// The help, drawn centred over the screen.
pub struct Help<'a> {
    /// The colours it lists.
    pub palette: &'a Palette,
}

impl Widget for Help<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let popup = centered(area, 78, 24);
        Clear.render(popup, buf);
        let block = Block::bordered()
            .border_type(BorderType::Rounded)
            .border_style(Style::new().fg(ACCENT))
            .title(" keys ")
            .title(Line::from(" any key closes ").right_aligned());
        let inner = block.inner(popup);
        block.render(popup, buf);
        let [left, right] =
            Layout::horizontal([Constraint::Length(46), Constraint::Fill(1)]).areas(inner);

        let head = |s: &'static str| Line::styled(s, Style::new().fg(ACCENT).bold());
        let row = |keys: &str, help: &str| {
            Line::from(vec![
                Span::styled(format!("{keys:<16}"), Style::new().bold()),
                Span::raw(help.to_string()),
            ])
        };
        let mut lines = vec![head("Drawing")];
        lines.extend(
            keys::DRAWING
                .iter()
                .chain(keys::ANYWHERE)
                .map(|r| row(r.keys, r.help)),
        );
        lines.push(head("Chat input"));
        lines.extend(keys::CHATTING.iter().map(|r| row(r.keys, r.help)));
        lines.push(head("Mouse"));
        lines.extend(keys::MOUSE.iter().map(|(k, h)| row(k, h)));
        Paragraph::new(lines).render(left, buf);

        let swatches = &self.palette.swatches;
        let mut lines = vec![head("Colours")];
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
            lines.push(Line::from(spans));
        }
        lines.push(Line::raw(""));
        lines.push(head("Chat commands"));
        lines.extend(keys::COMMANDS.iter().map(|(k, h)| {
            Line::from(vec![
                Span::styled(format!("{k:<16}"), Style::new().bold()),
                Span::raw(*h),
            ])
        }));
        lines.push(Line::raw(""));
        lines.push(Line::styled(
            "Offline, placed pixels wait",
            Style::new().fg(Color::DarkGray),
        ));
        lines.push(Line::styled(
            "and are sent on reconnect.",
            Style::new().fg(Color::DarkGray),
        ));
        Paragraph::new(Text::from(lines)).render(right, buf);
    }
}
