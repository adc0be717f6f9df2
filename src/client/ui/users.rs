//! The users pane drawn: who is online, us marked, and how many more when
//! they do not fit.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Paragraph, Widget};

use super::name_style;
use crate::client::app::users::Users;

impl Widget for &Users {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let block = Block::bordered()
            .border_type(BorderType::Rounded)
            .border_style(Style::new().fg(Color::DarkGray))
            .title(match self.churn {
                // A crowd: who came and went in the last report.
                Some((came, went)) => format!(" online {} +{came} -{went} ", self.online()),
                None => format!(" online {} ", self.online()),
            });
        let inner = block.inner(area);
        block.render(area, buf);
        let mut lines: Vec<Line> = self
            .names
            .iter()
            .map(|name| {
                if self.me.as_deref() == Some(name.as_str()) {
                    Line::from(vec![
                        Span::styled(name.clone(), name_style(name).bold()),
                        Span::styled(" (you)", Style::new().fg(Color::DarkGray)),
                    ])
                } else {
                    Line::styled(name.clone(), name_style(name))
                }
            })
            .collect();
        let rows = usize::from(inner.height);
        if lines.len() > rows && rows > 0 {
            let more = lines.len() - (rows - 1);
            lines.truncate(rows - 1);
            lines.push(Line::styled(
                format!("… {more} more (/who)"),
                Style::new().fg(Color::DarkGray),
            ));
        }
        Paragraph::new(lines).render(inner, buf);
    }
}
