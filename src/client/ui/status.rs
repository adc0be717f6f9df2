//! The status bar drawn: the connection, where and who, then the news (a
//! notice, why we are offline) and the cooldown countdown at the right.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::name_style;
use crate::client::app::session::Link;
use crate::client::app::status::{NoticeKind, format_tenths};
use crate::client::app::{App, Focus, Screen};

/// The status bar: it tells about the whole app.
pub struct StatusBar<'a>(pub &'a App);

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
            let secs = at.saturating_duration_since(app.now).as_secs_f64().ceil() as u64;
            Span::styled(
                format!("◌ reconnecting in {secs}s"),
                Style::new().fg(Color::Yellow).bold(),
            )
        }
        Link::Idle | Link::Offline { .. } | Link::Evicted { .. } => {
            Span::styled("○ offline", Style::new().fg(Color::Red).bold())
        }
    }
}

impl Widget for StatusBar<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.0;
        let sep = || Span::styled(" │ ", Style::new().fg(Color::DarkGray));
        let mut left = vec![Span::raw(" "), link_label(app), sep()];
        left.push(Span::raw(app.session.server.clone()));
        if let Some(me) = &app.users.me {
            left.extend([sep(), Span::styled(me.clone(), name_style(me).bold())]);
        }
        if app.session.online() {
            left.extend([sep(), Span::raw(format!("{} online", app.users.online()))]);
            if let Some(rtt) = app.session.rtt {
                left.extend([sep(), Span::raw(format!("rtt {}", format_rtt(rtt)))]);
            }
        }
        let queued = app.canvas.queued();
        if queued > 0 {
            left.extend([
                sep(),
                Span::styled(format!("{queued} queued"), Style::new().fg(Color::Yellow)),
            ]);
        }
        let left = Line::from(left);
        // News (a notice, why we are offline) wins the space when both do
        // not fit; the key hint only takes room that is free.
        let news = match (&app.status.notice, &app.session.link) {
            (Some(n), _) => Some(Span::styled(
                format!(" {} ", n.text),
                match n.kind {
                    NoticeKind::Error => Style::new().fg(Color::LightRed).bold(),
                    NoticeKind::Info => Style::new().fg(Color::LightCyan).bold(),
                },
            )),
            (
                None,
                Link::Retrying { reason, .. } | Link::Offline { reason } | Link::Evicted { reason },
            ) => Some(Span::styled(
                format!(" {reason} "),
                Style::new().fg(Color::LightRed),
            )),
            (None, _) => None,
        };
        // The countdown goes last, at the right edge, and the line is drawn
        // right-aligned: in a narrow terminal it is the last thing cut.
        let countdown = app.cooldown_left().map(|left_time| {
            Span::styled(
                format!(" cooldown {} ", format_tenths(left_time)),
                Style::new().fg(Color::Black).bg(Color::Yellow).bold(),
            )
        });
        let right = match (news, countdown) {
            (None, None) => Some(Line::from(Span::styled(
                hint(app),
                Style::new().fg(Color::DarkGray),
            )))
            .filter(|h| left.width() + h.width() <= usize::from(area.width)),
            (news, countdown) => Some(Line::from_iter(news.into_iter().chain(countdown))),
        };
        buf.set_style(area, Style::new().bg(Color::Black));
        left.render(area, buf);
        if let Some(right) = right {
            let width = (right.width() as u16).min(area.width);
            right
                .right_aligned()
                .render(Rect::new(area.right() - width, area.y, width, 1), buf);
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
        (Screen::Main, Focus::Chat) => " Enter sends  Esc back ",
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
