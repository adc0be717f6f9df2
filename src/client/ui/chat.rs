//! The chat pane drawn: the rows the state wraps and scrolls by, the rule
//! above the input, and the input line.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Widget};

use super::{focus_style, name_style};
use crate::client::app::chat::{ChatPane, Tone};

/// The chat pane with where its parts go.
pub struct ChatView<'a> {
    /// The pane.
    pub pane: &'a ChatPane,
    /// Keys go to the input.
    pub focused: bool,
    /// Where the messages go (the layout's).
    pub messages: Rect,
    /// Where the input line goes (the layout's).
    pub input: Rect,
}

/// How a piece of a chat line looks.
fn style(tone: Tone) -> Style {
    let dim = Style::new().fg(Color::DarkGray);
    match tone {
        Tone::Plain => Style::new(),
        Tone::Speaker(name) => name_style(name).bold(),
        Tone::PastSpeaker => dim.bold(),
        Tone::Dim => dim,
        Tone::Past => dim.italic(),
        Tone::Time => dim,
        Tone::DmMark => Style::new().fg(Color::Magenta).bold(),
        Tone::DmText => Style::new().fg(Color::Magenta),
        Tone::Error => Style::new().fg(Color::LightRed),
    }
}

impl Widget for ChatView<'_> {
    /// Draws the block in `area`, the messages and the input inside.
    fn render(self, area: Rect, buf: &mut Buffer) {
        let mut block = Block::bordered()
            .border_type(BorderType::Rounded)
            .border_style(focus_style(self.focused))
            .title(" chat ");
        let messages = self.messages;
        let rows = self.pane.rows(messages.width);
        let height = usize::from(messages.height);
        let back = self.pane.scroll.min(rows.len().saturating_sub(height));
        if back > 0 {
            block = block.title(Line::from(format!(" ↑{back} · End follows ")).right_aligned());
        }
        if back > 0 && self.pane.unread > 0 {
            // What arrived below, on the bottom border: `3 new ↓`, and
            // louder when some of it is for the user.
            let (text, style) = match self.pane.unread_mentions {
                0 => (
                    format!(" {} new ↓ ", self.pane.unread),
                    Style::new().fg(Color::Yellow).bold(),
                ),
                n => (
                    format!(" {} new, {n} for you ↓ ", self.pane.unread),
                    Style::new().fg(Color::Black).bg(Color::LightMagenta).bold(),
                ),
            };
            block = block.title_bottom(Line::styled(text, style).right_aligned());
        }
        block.render(area, buf);
        let top = rows.len().saturating_sub(height + back);
        for (y, row) in (messages.y..messages.bottom()).zip(&rows[top..]) {
            let spans: Vec<Span> = row
                .iter()
                .map(|&(tone, text)| Span::styled(text, style(tone)))
                .collect();
            Line::from(spans).render(Rect::new(messages.x, y, messages.width, 1), buf);
        }
        // The rule joins the block's sides, as a split pane's does.
        let rule = Rect::new(area.x, self.input.y - 1, area.width, 1);
        let inside = "─".repeat(usize::from(rule.width.saturating_sub(2)));
        Line::styled(format!("├{inside}┤"), focus_style(self.focused)).render(rule, buf);

        let input = &self.pane.input;
        let prompt = Span::styled("> ", focus_style(self.focused).bold());
        let line = if input.value().is_empty() && !self.focused {
            Line::from(vec![
                prompt,
                Span::styled("Enter to chat", Style::new().fg(Color::DarkGray)),
            ])
        } else {
            let width = usize::from(self.input.width.saturating_sub(2));
            let scroll = input.visual_scroll(width);
            let shown: String = input.value().chars().skip(scroll).collect();
            Line::from(vec![prompt, Span::raw(shown)])
        };
        line.render(self.input, buf);
    }
}

/// Where the terminal cursor goes while typing in the input drawn in
/// `input`.
pub fn cursor(pane: &ChatPane, input: Rect) -> (u16, u16) {
    let scroll = pane.input.visual_scroll(usize::from(input.width - 2));
    let x = (pane.input.visual_cursor().saturating_sub(scroll) + 2) as u16;
    (input.x + x.min(input.width - 1), input.y)
}
