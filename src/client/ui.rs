//! Drawing: a pure function of the [`App`] state. [`layout`] and [`view`]
//! are shared with the state's mouse handling, so a click lands on the pixel
//! that is drawn there.
//!
//! The canvas uses half blocks: a cell shows `▀` with the upper pixel as the
//! foreground and the lower one as the background, so a 64x64 canvas takes
//! 64x32 cells.

use std::collections::HashMap;

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Constraint, Layout, Margin, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, BorderType, Clear, Padding, Paragraph, Widget, Wrap};

use super::app::{App, ChatLine, Field, Focus, Link, LoginForm, NoticeKind, Overlay, Screen};
use super::keys;
use crate::protocol::MAX_NAME;

/// Smallest terminal the main screen is drawn in.
pub const MIN_SIZE: (u16, u16) = (50, 12);
/// Narrowest the users and chat column gets; the canvas scrolls instead.
const SIDE_MIN: u16 = 28;
/// Cells per palette slot: marker, key, two swatch cells; in a narrow
/// terminal the marker goes (the selected key is drawn reversed instead),
/// so all 16 colours still fit in the narrowest layout.
const SLOT: u16 = 4;
const SLOT_NARROW: u16 = 3;
/// The highlight colour for focus, the cursor rulers and the selection.
const ACCENT: Color = Color::Yellow;

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

/// Where everything on the main screen goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    /// The canvas block, border included.
    pub canvas: Rect,
    /// The cells that show pixels.
    pub canvas_inner: Rect,
    /// The palette bar.
    pub palette: Rect,
    /// The users block.
    pub users: Rect,
    /// The chat block, border included.
    pub chat: Rect,
    /// The chat messages.
    pub messages: Rect,
    /// The chat input line.
    pub input: Rect,
    /// The status bar.
    pub status: Rect,
}

/// Lays out the main screen for a canvas of `canvas` pixels (64x64 until
/// one is known) and `users` names. `None` when the terminal is too small.
pub fn layout(area: Rect, canvas: Option<(u16, u16)>, users: usize) -> Option<Areas> {
    if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
        return None;
    }
    let [body, palette, status] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let (w, h) = canvas.unwrap_or((crate::DEFAULT_WIDTH, crate::DEFAULT_HEIGHT));
    let natural_w = w.saturating_add(2);
    let natural_h = h.div_ceil(2).saturating_add(2);
    let canvas_w = natural_w.min(body.width - SIDE_MIN);
    let [canvas_col, side] =
        Layout::horizontal([Constraint::Length(canvas_w), Constraint::Fill(1)]).areas(body);
    let canvas = Rect {
        height: natural_h.min(canvas_col.height),
        ..canvas_col
    };
    let users_h = (users as u16)
        .saturating_add(2)
        .clamp(3, (side.height / 3).max(3));
    let [users, chat] =
        Layout::vertical([Constraint::Length(users_h), Constraint::Fill(1)]).areas(side);
    let [messages, _rule, input] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(chat.inner(Margin::new(1, 1)));
    Some(Areas {
        canvas,
        canvas_inner: canvas.inner(Margin::new(1, 1)),
        palette,
        users,
        chat,
        messages,
        input,
        status,
    })
}

/// Keeps `offset` if `cursor` is inside `[offset, offset + span)`, else
/// moves it just enough, as an editor scrolls.
fn follow(offset: u16, cursor: u16, span: u16, len: u16) -> u16 {
    if span == 0 || len <= span {
        return 0;
    }
    let mut o = offset.min(len - span);
    if cursor < o {
        o = cursor;
    } else if cursor >= o + span {
        o = cursor + 1 - span;
    }
    o.min(len - span)
}

/// The top-left pixel shown in `inner`: the app's view, moved as little as
/// needed to show the cursor.
pub fn view(inner: Rect, app: &App) -> (u16, u16) {
    let Some((w, h)) = app.canvas_size() else {
        return (0, 0);
    };
    let x = follow(app.view.0, app.cursor.0, inner.width, w);
    let row = follow(
        app.view.1 / 2,
        app.cursor.1 / 2,
        inner.height,
        h.div_ceil(2),
    );
    (x, row * 2)
}

fn slot_width(bar: Rect) -> u16 {
    if bar.width > 16 * SLOT {
        SLOT
    } else {
        SLOT_NARROW
    }
}

/// The palette slot `i` is drawn in.
pub fn palette_slot(bar: Rect, i: usize) -> Rect {
    let w = slot_width(bar);
    Rect::new(bar.x + 1 + i as u16 * w, bar.y, w, 1).intersection(bar)
}

/// The palette index drawn at `at`, if any.
pub fn palette_at(bar: Rect, colors: usize, at: Position) -> Option<u8> {
    (0..colors.min(16))
        .find(|&i| palette_slot(bar, i).contains(at))
        .map(|i| i as u8)
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    match &app.screen {
        Screen::Login(form) => draw_login(frame, area, app, form),
        Screen::Main => match layout(area, app.canvas_size(), app.users.len()) {
            Some(areas) => draw_main(frame, &areas, app),
            None => too_small(frame.buffer_mut(), area),
        },
    }
    if app.overlay == Overlay::Help {
        draw_help(frame.buffer_mut(), area, app);
    }
}

fn too_small(buf: &mut Buffer, area: Rect) {
    let text = format!(
        "Too small: {}x{}\n(pixchat needs {}x{})\nq quits",
        area.width, area.height, MIN_SIZE.0, MIN_SIZE.1
    );
    Paragraph::new(text)
        .alignment(Alignment::Center)
        .wrap(Wrap { trim: true })
        .render(area, buf);
}

fn draw_main(frame: &mut Frame, areas: &Areas, app: &App) {
    let buf = frame.buffer_mut();
    draw_canvas(buf, areas, app);
    draw_palette(buf, areas.palette, app);
    draw_users(buf, areas.users, app);
    draw_chat(buf, areas, app);
    draw_status(buf, areas.status, app);
    if app.focus == Focus::Chat && app.overlay == Overlay::None {
        let scroll = app.input.visual_scroll(usize::from(areas.input.width - 2));
        let x = (app.input.visual_cursor().saturating_sub(scroll) + 2) as u16;
        frame.set_cursor_position((areas.input.x + x.min(areas.input.width - 1), areas.input.y));
    }
}

fn focus_style(focused: bool) -> Style {
    if focused {
        Style::new().fg(ACCENT)
    } else {
        Style::new().fg(Color::DarkGray)
    }
}

fn draw_canvas(buf: &mut Buffer, areas: &Areas, app: &App) {
    let focused = app.focus == Focus::Canvas;
    let mut block = Block::bordered()
        .border_type(BorderType::Rounded)
        .border_style(focus_style(focused));
    let inner = areas.canvas_inner;
    let Some(canvas) = &app.canvas else {
        block.title(" canvas ").render(areas.canvas, buf);
        let what = match &app.link {
            Link::Online | Link::Connecting { .. } | Link::Idle => {
                format!("connecting to {}…", app.server)
            }
            Link::Retrying { reason, .. } | Link::Offline { reason } | Link::Evicted { reason } => {
                format!("no canvas yet: {reason}")
            }
        };
        let y = inner.y + inner.height / 2;
        Paragraph::new(what)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true })
            .render(
                Rect::new(inner.x, y, inner.width, inner.height - (y - inner.y)),
                buf,
            );
        return;
    };
    let (cx, cy) = app.cursor;
    let under = canvas.get(cx, cy).unwrap_or(0);
    block = block
        .title(format!(" canvas {}x{} ", canvas.width, canvas.height))
        .title(Line::from(format!(" ({cx},{cy}) {} ", app.color_name(under))).right_aligned());
    block.render(areas.canvas, buf);

    let (vx, vy) = view(inner, app);
    let pending: HashMap<(u16, u16), u8> =
        app.pending.iter().map(|p| ((p.x, p.y), p.color)).collect();
    let pixel = |x: u16, y: u16| -> Option<Color> {
        let index = pending.get(&(x, y)).copied().or_else(|| canvas.get(x, y))?;
        let rgb = app.rgb(index);
        let rgb = if (x, y) == app.cursor {
            contrast(rgb)
        } else {
            rgb
        };
        Some(app.color_mode.color(rgb))
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
    // Rulers on the border point at the cursor's column and row, so it is
    // easy to find on any picture.
    let ruler = Style::new().fg(ACCENT).add_modifier(Modifier::BOLD);
    if (vx..vx + inner.width).contains(&cx) {
        buf[(inner.x + cx - vx, areas.canvas.bottom() - 1)]
            .set_char('▲')
            .set_style(ruler);
    }
    if (vy / 2..vy / 2 + inner.height).contains(&(cy / 2)) {
        buf[(areas.canvas.x, inner.y + cy / 2 - vy / 2)]
            .set_char('▶')
            .set_style(ruler);
    }
}

fn draw_palette(buf: &mut Buffer, bar: Rect, app: &App) {
    let w = slot_width(bar);
    for (i, swatch) in app.palette.iter().enumerate().take(16) {
        let slot = palette_slot(bar, i);
        if slot.width < w {
            break;
        }
        let selected = i == usize::from(app.color);
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
                .set_bg(app.color_mode.color(swatch.rgb));
        }
    }
    let shown = app.palette.len().min(16);
    let after = palette_slot(bar, shown.saturating_sub(1)).right() + 1;
    if after < bar.right() {
        let name = Line::from(vec![
            Span::styled(app.color_name(app.color).to_string(), Style::new().bold()),
            Span::styled("  [ ] 0-f", Style::new().fg(Color::DarkGray)),
        ]);
        name.render(Rect::new(after, bar.y, bar.right() - after, 1), buf);
    }
}

fn draw_users(buf: &mut Buffer, area: Rect, app: &App) {
    let block = Block::bordered()
        .border_type(BorderType::Rounded)
        .border_style(Style::new().fg(Color::DarkGray))
        .title(format!(" online {} ", app.online()));
    let inner = block.inner(area);
    block.render(area, buf);
    let mut lines: Vec<Line> = app
        .users
        .iter()
        .map(|name| {
            if app.me.as_deref() == Some(name.as_str()) {
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

/// A stable colour per name, so speakers are told apart at a glance.
fn name_style(name: &str) -> Style {
    const COLORS: [Color; 6] = [
        Color::Cyan,
        Color::Green,
        Color::Magenta,
        Color::LightBlue,
        Color::LightRed,
        Color::LightGreen,
    ];
    let hash = name.bytes().fold(0u32, |h, b| {
        h.wrapping_mul(31)
            .wrapping_add(u32::from(b.to_ascii_lowercase()))
    });
    Style::new().fg(COLORS[hash as usize % COLORS.len()])
}

fn chat_paragraph(app: &App) -> Paragraph<'_> {
    let dim = Style::new().fg(Color::DarkGray);
    let lines: Vec<Line> = app
        .chat
        .iter()
        .map(|line| match line {
            ChatLine::Msg { from, text } => Line::from(vec![
                Span::styled(from.as_str(), name_style(from).bold()),
                Span::raw(": "),
                Span::raw(text.as_str()),
            ]),
            ChatLine::DmIn { from, text } => Line::from(vec![
                Span::styled("[dm] ", Style::new().fg(Color::Magenta).bold()),
                Span::styled(from.as_str(), name_style(from).bold()),
                Span::raw(": "),
                Span::styled(text.as_str(), Style::new().fg(Color::Magenta)),
            ]),
            ChatLine::DmOut { to, text } => Line::from(vec![
                Span::styled("[dm → ", Style::new().fg(Color::Magenta).bold()),
                Span::styled(to.as_str(), name_style(to).bold()),
                Span::styled("] ", Style::new().fg(Color::Magenta).bold()),
                Span::styled(text.as_str(), Style::new().fg(Color::Magenta)),
            ]),
            ChatLine::History { from, text } => Line::from(vec![
                Span::styled(from.as_str(), dim.bold()),
                Span::styled(": ", dim),
                Span::styled(text.as_str(), dim),
            ]),
            ChatLine::Joined(name) => Line::styled(format!("→ {name} joined"), dim),
            ChatLine::Left(name) => Line::styled(format!("← {name} left"), dim),
            ChatLine::Info(text) => Line::styled(format!("· {text}"), dim),
            ChatLine::Error(text) => {
                Line::styled(format!("! {text}"), Style::new().fg(Color::LightRed))
            }
        })
        .collect();
    Paragraph::new(lines).wrap(Wrap { trim: false })
}

/// Rows the chat takes when wrapped to `width` columns.
pub fn chat_rows(app: &App, width: u16) -> usize {
    chat_paragraph(app).line_count(width)
}

fn draw_chat(buf: &mut Buffer, areas: &Areas, app: &App) {
    let focused = app.focus == Focus::Chat;
    let mut block = Block::bordered()
        .border_type(BorderType::Rounded)
        .border_style(focus_style(focused))
        .title(" chat ");
    let total = chat_rows(app, areas.messages.width);
    let height = usize::from(areas.messages.height);
    let back = app.chat_scroll.min(total.saturating_sub(height));
    if back > 0 {
        block = block.title(Line::from(format!(" ↑{back} · End follows ")).right_aligned());
    }
    block.render(areas.chat, buf);
    let top = total.saturating_sub(height + back);
    chat_paragraph(app)
        .scroll((top.min(usize::from(u16::MAX)) as u16, 0))
        .render(areas.messages, buf);
    // The rule joins the block's sides, as a split pane's does.
    let rule = Rect::new(areas.chat.x, areas.input.y - 1, areas.chat.width, 1);
    let inside = "─".repeat(usize::from(rule.width.saturating_sub(2)));
    Line::styled(format!("├{inside}┤"), focus_style(focused)).render(rule, buf);

    let prompt = Span::styled("> ", focus_style(focused).bold());
    let line = if app.input.value().is_empty() && !focused {
        Line::from(vec![
            prompt,
            Span::styled("Enter to chat", Style::new().fg(Color::DarkGray)),
        ])
    } else {
        let width = usize::from(areas.input.width.saturating_sub(2));
        let scroll = app.input.visual_scroll(width);
        let shown: String = app.input.value().chars().skip(scroll).collect();
        Line::from(vec![prompt, Span::raw(shown)])
    };
    line.render(areas.input, buf);
}

/// The connection state as words, with a symbol and colour.
fn link_label(app: &App) -> Span<'static> {
    match &app.link {
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

fn draw_status(buf: &mut Buffer, area: Rect, app: &App) {
    let sep = || Span::styled(" │ ", Style::new().fg(Color::DarkGray));
    let mut left = vec![Span::raw(" "), link_label(app), sep()];
    left.push(Span::raw(app.server.clone()));
    if let Some(me) = &app.me {
        left.extend([sep(), Span::styled(me.clone(), name_style(me).bold())]);
    }
    if app.link == Link::Online {
        left.extend([sep(), Span::raw(format!("{} online", app.online()))]);
        if let Some(rtt) = app.rtt {
            left.extend([sep(), Span::raw(format!("rtt {}", format_rtt(rtt)))]);
        }
    }
    let queued = app.queued();
    if queued > 0 {
        left.extend([
            sep(),
            Span::styled(format!("{queued} queued"), Style::new().fg(Color::Yellow)),
        ]);
    }
    let left = Line::from(left);
    // News (a notice, why we are offline) wins the space when both do not
    // fit; the key hint only takes room that is free.
    let news = match (&app.notice, &app.link) {
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
            format!(" cooldown {} ", super::app::format_tenths(left_time)),
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

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    )
}

fn draw_login(frame: &mut Frame, area: Rect, app: &App, form: &LoginForm) {
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
            Span::raw(app.server.clone()),
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
        draw_status(buf, status, app);
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

fn draw_help(buf: &mut Buffer, area: Rect, app: &App) {
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

    let mut lines = vec![head("Colours")];
    let half = app.palette.len().min(16).div_ceil(2);
    for i in 0..half {
        let mut spans = Vec::new();
        for j in [i, i + half] {
            let Some(swatch) = app.palette.get(j).filter(|_| j < 16) else {
                continue;
            };
            let key = char::from_digit(j as u32, 16).expect("index below 16");
            spans.push(Span::styled(format!("{key} "), Style::new().bold()));
            spans.push(Span::styled(
                "  ",
                Style::new().bg(app.color_mode.color(swatch.rgb)),
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

#[cfg(test)]
mod tests;
