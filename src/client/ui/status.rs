//! The status bar drawn as fields that never overwrite each other: the
//! connection state first and always whole, then where and who, users
//! online, round trip, pixels queued and the template's count, each
//! dropped (least useful first) when the bar is too narrow; the news (a
//! notice, why we are offline) in a field of its own, cut with an
//! ellipsis; the cooldown countdown at the right edge; and the key hint
//! only in room nobody else wants. While the prompt is up, the bar is the
//! prompt.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;
use unicode_segmentation::UnicodeSegmentation;

use super::{ACCENT, name_style};
use crate::client::app::session::Link;
use crate::client::app::status::{NoticeKind, format_tenths};
use crate::client::app::{App, Focus, Screen};

/// The status bar: it tells about the whole app.
pub struct StatusBar<'a>(pub &'a App);

/// The fewest cells the news keeps before the fields at the left give up
/// theirs.
const NEWS_MIN: usize = 30;

/// One field: what it shows, and how readily it goes when room is short
/// (higher goes first).
struct Field {
    span: Span<'static>,
    drop_order: u8,
}

/// The connection state as words, with a symbol and colour.
fn link_label(app: &App) -> Span<'static> {
    match &app.session.link {
        Link::Online => Span::styled("● connected", Style::new().fg(Color::Green).bold()),
        Link::Connecting { attempt } if *attempt > 1 => Span::styled(
            format!("◌ connecting (try {attempt})"),
            Style::new().fg(Color::Yellow).bold(),
        ),
        Link::Connecting { .. } => {
            Span::styled("◌ connecting", Style::new().fg(Color::Yellow).bold())
        }
        Link::Retrying { at, .. } => {
            let left = at.saturating_duration_since(app.now);
            let text = if left.as_millis() < 1000 {
                "◌ reconnecting".to_string()
            } else {
                format!("◌ reconnecting in {}s", left.as_secs_f64().ceil() as u64)
            };
            Span::styled(text, Style::new().fg(Color::Yellow).bold())
        }
        Link::Idle | Link::Offline { .. } | Link::Evicted { .. } => {
            Span::styled("○ offline", Style::new().fg(Color::Red).bold())
        }
    }
}

/// The fields at the left, in order.
fn fields(app: &App) -> Vec<Field> {
    let f = |span, drop_order| Field { span, drop_order };
    let mut out = vec![f(link_label(app), 0)];
    out.push(f(Span::raw(app.session.server.clone()), 6));
    if let Some(me) = &app.users.me {
        out.push(f(Span::styled(me.clone(), name_style(me).bold()), 4));
    }
    if app.session.online() {
        out.push(f(Span::raw(format!("{} online", app.users.online())), 3));
        if let Some(rtt) = app.session.rtt {
            out.push(f(Span::raw(format!("rtt {}", format_rtt(rtt))), 5));
        }
    }
    let queued = app.canvas.queued();
    if queued > 0 {
        let text = format!("{queued} queued");
        out.push(f(Span::styled(text, Style::new().fg(Color::Yellow)), 1));
    }
    if let Some(t) = &app.template {
        let text = match t.left() {
            0 => "template done".to_string(),
            n => format!("template {n} left"),
        };
        out.push(f(Span::styled(text, Style::new().fg(ACCENT)), 2));
    }
    out
}

/// `text` cut to `width` cells, with `…` when it was longer.
pub fn ellipsize(text: &str, width: usize) -> String {
    if Line::raw(text).width() <= width {
        return text.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for g in text.graphemes(true) {
        let w = Line::raw(g).width();
        if used + w + 1 > width {
            break;
        }
        out.push_str(g);
        used += w;
    }
    if width > 0 {
        out.push('…');
    }
    out
}

impl Widget for StatusBar<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.0;
        buf.set_style(area, Style::new().bg(Color::Black));
        if let (Some(prompt), Focus::Prompt) = (&app.prompt, app.focus) {
            let mut spans = vec![
                Span::styled(
                    format!(" {}", prompt.ask.label()),
                    Style::new().fg(ACCENT).bold(),
                ),
                Span::raw(prompt.input.value().to_string()),
            ];
            match &prompt.error {
                Some(e) => spans.push(Span::styled(
                    format!("  {e}"),
                    Style::new().fg(Color::LightRed),
                )),
                None => spans.push(Span::styled(
                    "  Enter goes · Esc cancels",
                    Style::new().fg(Color::DarkGray),
                )),
            }
            Line::from(spans).render(area, buf);
            return;
        }
        let width = usize::from(area.width);
        let sep = || Span::styled(" │ ", Style::new().fg(Color::DarkGray));
        let news = match (&app.status.notice, &app.session.link) {
            (Some(n), _) => Some((
                n.text.clone(),
                match n.kind {
                    NoticeKind::Error => Style::new().fg(Color::LightRed).bold(),
                    NoticeKind::Info => Style::new().fg(Color::LightCyan).bold(),
                },
            )),
            (
                None,
                Link::Retrying { reason, .. } | Link::Offline { reason } | Link::Evicted { reason },
            ) => Some((reason.clone(), Style::new().fg(Color::LightRed))),
            (None, _) => None,
        };
        let countdown = app.cooldown_left().map(|left| {
            Span::styled(
                format!(" cooldown {} ", format_tenths(left)),
                Style::new().fg(Color::Black).bg(Color::Yellow).bold(),
            )
        });
        let right_w = countdown.as_ref().map_or(0, |c| c.width());
        // Drop fields, least useful first, until the news has its room.
        let mut fields = fields(app);
        let left_width = |fields: &[Field]| {
            1 + fields.iter().map(|f| f.span.width()).sum::<usize>() + 3 * (fields.len() - 1)
        };
        let wanted_news = news.as_ref().map_or(0, |(text, _)| {
            Line::raw(text.as_str()).width().min(NEWS_MIN) + 3
        });
        while fields.len() > 1 && left_width(&fields) + wanted_news + right_w > width {
            let (i, _) = fields
                .iter()
                .enumerate()
                .max_by_key(|(_, f)| f.drop_order)
                .expect("more than one field");
            fields.remove(i);
        }
        let mut left = vec![Span::raw(" ")];
        for (i, field) in fields.into_iter().enumerate() {
            if i > 0 {
                left.push(sep());
            }
            left.push(field.span);
        }
        let left = Line::from(left);
        let mut x = area.x + (left.width() as u16).min(area.width);
        left.render(area, buf);
        let right_x = area.right() - (right_w as u16).min(area.width);
        if let Some((text, style)) = news {
            // The news's own field: after the fields, before the countdown.
            let room = usize::from(right_x.saturating_sub(x)).saturating_sub(4);
            if room > 0 {
                let line = Line::from(vec![sep(), Span::styled(ellipsize(&text, room), style)]);
                let w = line.width() as u16;
                line.render(Rect::new(x, area.y, right_x - x, 1), buf);
                x += w;
            }
        } else if countdown.is_none() {
            let hint = Span::styled(hint(app), Style::new().fg(Color::DarkGray));
            let w = hint.width() as u16;
            if x + w <= area.right() {
                Line::from(hint).render(Rect::new(area.right() - w, area.y, w, 1), buf);
            }
        }
        if let Some(countdown) = countdown
            && right_x >= x
        {
            Line::from(countdown)
                .render(Rect::new(right_x, area.y, area.right() - right_x, 1), buf);
        }
    }
}

/// The keys that matter most where the focus is.
fn hint(app: &App) -> &'static str {
    match (&app.screen, app.focus) {
        (Screen::Login(form), _) if form.password.is_some() => {
            " Tab switches field  Enter joins  Esc quits "
        }
        (Screen::Login(_), _) => " Enter joins  Esc quits ",
        (Screen::Main, Focus::Chat) => " Enter sends  Tab completes  Esc back ",
        (Screen::Main, Focus::Prompt) => " Enter goes  Esc cancels ",
        (Screen::Main, Focus::Canvas) => " ? help  q quit ",
    }
}

fn format_rtt(rtt: std::time::Duration) -> String {
    if rtt.as_millis() >= 10 {
        format!("{} ms", rtt.as_millis())
    } else {
        format!("{:.1} ms", rtt.as_secs_f64() * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        assert_eq!(ellipsize("short", 10), "short");
        assert_eq!(ellipsize("pixel (4,2) not placed", 10), "pixel (4,…");
        assert_eq!(ellipsize("漢字漢字", 5), "漢字…");
    }
}
