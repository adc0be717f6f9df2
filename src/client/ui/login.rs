//! The login screen drawn: the form in a box, the status bar under it, and
//! the terminal cursor in the field being typed in.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Padding, Paragraph, Widget, Wrap};

use super::status::StatusBar;
use super::{ACCENT, centered};
use crate::client::app::login::{Field, LoginForm};
use crate::client::app::{App, Overlay};
use crate::protocol::MAX_NAME;

/// Draws the login screen for `form` in `area`.
pub fn draw(frame: &mut Frame, area: Rect, app: &App, form: &LoginForm) {
    let status = Rect::new(
        area.x,
        area.bottom().saturating_sub(1),
        area.width,
        1.min(area.height),
    );
    let body = Rect {
        height: area.height.saturating_sub(1),
        ..area
    };
    let boxed = centered(body, 54, if form.password.is_some() { 13 } else { 12 });
    let block = Block::bordered()
        .border_type(BorderType::Rounded)
        .border_style(Style::new().fg(ACCENT))
        .padding(Padding::new(2, 2, 1, 0))
        .title(" pixchat ");
    let inner = block.inner(boxed);
    let buf = frame.buffer_mut();
    Clear.render(boxed, buf);
    block.render(boxed, buf);
    let dim = Style::new().fg(Color::DarkGray);
    let mut lines = vec![
        Line::from(vec![
            Span::styled("server  ", dim),
            Span::raw(app.session.server.clone()),
        ]),
        Line::raw(""),
        Line::raw("Pick a name to draw and chat with"),
        Line::styled("(1-24 letters, digits, _ - .)", dim),
        Line::raw(""),
    ];
    // Labels as wide as the widest shown, so the fields line up.
    let label_w = if form.password.is_some() { 10 } else { 6 };
    let label = |text: &str, field: Field| {
        let style = if form.password.is_some() && form.field == field {
            Style::new().fg(ACCENT).bold()
        } else {
            Style::new().bold()
        };
        Span::styled(format!("{text:<label_w$}"), style)
    };
    // Fields are drawn as wide as the longest name, so each reads as one.
    let field_style = Style::new().bg(Color::DarkGray).fg(Color::White);
    let name_row = inner.y + lines.len() as u16;
    let name = format!("{:<width$}", form.name.value(), width = MAX_NAME + 1);
    lines.push(Line::from(vec![
        label("name", Field::Name),
        Span::styled(name, field_style),
    ]));
    if let Some(password) = &form.password {
        // Masked: one dot per character, never the text itself.
        let dots = "•".repeat(password.value().chars().count());
        let masked = format!("{dots:<width$}", width = MAX_NAME + 1);
        lines.push(Line::from(vec![
            label("password", Field::Password),
            Span::styled(masked, field_style),
        ]));
    }
    lines.push(Line::raw(""));
    lines.push(match &form.error {
        Some(e) => Line::styled(e.clone(), Style::new().fg(Color::LightRed).bold()),
        None => Line::styled("Enter joins · Esc quits", dim),
    });
    Paragraph::new(lines)
        .wrap(Wrap { trim: true })
        .render(inner, buf);
    if area.height > 1 {
        StatusBar(app).render(status, buf);
    }
    let (row, col) = match (&form.password, form.field) {
        (Some(password), Field::Password) => (name_row + 1, password.cursor()),
        _ => (name_row, form.name.visual_cursor()),
    };
    if app.overlay == Overlay::None && row < inner.bottom() {
        let x = inner.x + label_w as u16 + col.min(usize::from(u16::MAX)) as u16;
        frame.set_cursor_position((x.min(inner.right().saturating_sub(1)), row));
    }
}
