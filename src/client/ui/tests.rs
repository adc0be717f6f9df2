//! The screen drawn into ratatui's `TestBackend`, checked cell by cell: the
//! colours a user sees, where they see them.

use std::sync::Arc;
use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier};

use super::*;
use crate::client::app::palette;
use crate::client::app::session::Link;
use crate::client::app::{App, Intent};
use crate::client::color::ColorMode;
use crate::client::event::AppEvent;
use crate::client::keys;
use crate::client::net::ClientEvent;
use crate::client::testing::*;
use crate::protocol::{Event, Pixel};

const RED: Color = Color::Rgb(0xE5, 0x00, 0x00);
const WHITE: Color = Color::Rgb(0xFF, 0xFF, 0xFF);

fn render(app: &App) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(app.size.0, app.size.1)).unwrap();
    terminal.draw(|frame| draw(frame, app)).unwrap();
    terminal.backend().buffer().clone()
}

fn row(buf: &Buffer, y: u16) -> String {
    (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect()
}

fn screen(buf: &Buffer) -> String {
    (0..buf.area.height)
        .map(|y| row(buf, y))
        .collect::<Vec<_>>()
        .join("\n")
}

fn inner(app: &App) -> Rect {
    areas(app).canvas_inner
}

/// The layout the state kept, which the drawing uses.
fn areas(app: &App) -> Areas {
    app.layout.expect("a layout")
}

fn place(app: &mut App, seq: u64, x: u16, y: u16, color: u8) {
    app.update(
        net(ClientEvent::Event(Event::Pixel(Pixel {
            seq,
            x,
            y,
            color,
            name: Arc::from("bob"),
        }))),
        t0(),
    );
}

fn press(app: &mut App, events: impl IntoIterator<Item = AppEvent>) -> Vec<Intent> {
    events
        .into_iter()
        .flat_map(|e| app.update(e, t0()))
        .collect()
}

#[test]
fn a_pixel_at_3_4_is_the_upper_half_of_cell_3_2() {
    let mut app = online_on(64, 64, (120, 40), ColorMode::TrueColor);
    press(&mut app, vec![key('L'); 2]);
    place(&mut app, 1, 3, 4, 5);
    let buf = render(&app);
    let inner = inner(&app);
    let cell = &buf[(inner.x + 3, inner.y + 2)];
    assert_eq!(cell.symbol(), "▀");
    assert_eq!(cell.fg, RED, "the upper half is pixel (3,4)");
    assert_eq!(cell.bg, WHITE, "the lower half is pixel (3,5), still white");
    // Its neighbours are untouched.
    assert_eq!(buf[(inner.x + 3, inner.y + 1)].fg, WHITE);
    assert_eq!(buf[(inner.x + 2, inner.y + 2)].fg, WHITE);
    // The lower half of a cell is the odd row.
    place(&mut app, 2, 3, 5, 12);
    let buf = render(&app);
    assert_eq!(
        buf[(inner.x + 3, inner.y + 2)].bg,
        Color::Rgb(0x00, 0x83, 0xC7)
    );
    // A 64x64 canvas takes 64x32 cells.
    assert_eq!((inner.width, inner.height), (64, 32));
}

#[test]
fn the_cursor_stands_out_on_any_colour_and_the_border_points_at_it() {
    let mut app = online_on(64, 64, (120, 40), ColorMode::TrueColor);
    // Cursor to (3,4), on a red pixel.
    press(&mut app, [key('l'), key('l'), key('l')]);
    press(&mut app, vec![key('j'); 4]);
    place(&mut app, 1, 3, 4, 5);
    let buf = render(&app);
    let a = areas(&app);
    let at = (a.canvas_inner.x + 3, a.canvas_inner.y + 2);
    // Red under the cursor, white all around: the cursor is far from both
    // (the report's white cursor beside white pixels is gone).
    let far = |c: Color| match c {
        Color::Rgb(r, g, b) => {
            let d = |x: [u8; 3]| canvas::distance([r, g, b], x);
            d([0xE5, 0, 0]).min(d([255; 3])) > 40_000
        }
        _ => false,
    };
    assert!(far(buf[at].fg), "{:?}", buf[at].fg);
    assert_eq!(buf[at].bg, WHITE, "the other half keeps its colour");
    press(&mut app, [key('j')]);
    let buf = render(&app);
    assert!(far(buf[at].bg), "{:?}", buf[at].bg);
    assert_eq!(buf[at].fg, RED);
    // Rulers on the border: column on the bottom edge, row on the left.
    assert_eq!(buf[(at.0, a.canvas.bottom() - 1)].symbol(), "▲");
    assert_eq!(buf[(a.canvas.x, at.1)].symbol(), "▶");
    assert_eq!(buf[(at.0 + 1, a.canvas.bottom() - 1)].symbol(), "─");
    // The title reads the position and the colour under the cursor.
    assert!(
        row(&buf, a.canvas.y).contains("(3,5) white"),
        "{}",
        row(&buf, 0)
    );
}

#[test]
fn the_palette_shows_every_colour_with_its_key_and_marks_the_selection() {
    let mut app = online();
    press(&mut app, [key('5')]);
    let buf = render(&app);
    let bar = areas(&app).palette;
    for (i, c) in crate::protocol::PALETTE.iter().enumerate() {
        let slot = palette::slot(bar, i);
        let key = char::from_digit(i as u32, 16).unwrap().to_string();
        assert_eq!(buf[(slot.x + 1, slot.y)].symbol(), key);
        let [r, g, b] = c.rgb;
        assert_eq!(
            buf[(slot.x + 2, slot.y)].bg,
            Color::Rgb(r, g, b),
            "{}",
            c.name
        );
        let marker = if i == 5 { "▸" } else { " " };
        assert_eq!(buf[(slot.x, slot.y)].symbol(), marker, "slot {i}");
    }
    assert!(
        buf[(palette::slot(bar, 5).x + 1, bar.y)]
            .modifier
            .contains(Modifier::BOLD)
    );
    assert!(row(&buf, bar.y).contains("red  [ ] 0-f"));
}

#[test]
fn in_the_narrowest_layout_all_16_colours_still_show() {
    let mut app = online_on(64, 64, MIN_SIZE, ColorMode::TrueColor);
    press(&mut app, [key('e')]);
    let buf = render(&app);
    let bar = areas(&app).palette;
    for i in 0..16 {
        let slot = palette::slot(bar, i);
        assert_eq!(slot.width, 3, "compact slots at {} columns", bar.width);
        let key = char::from_digit(i as u32, 16).unwrap().to_string();
        assert_eq!(buf[(slot.x, slot.y)].symbol(), key);
        let reversed = buf[(slot.x, slot.y)].modifier.contains(Modifier::REVERSED);
        assert_eq!(reversed, i == 14, "only the selected key is reversed");
    }
    // The status keeps who and where; the key hint gives way.
    let status = row(&buf, areas(&app).status.y);
    assert!(
        status.contains("● connected") && status.contains("alice"),
        "{status}"
    );
}

#[test]
fn without_true_colour_the_nearest_of_256_is_used() {
    // Which index each colour gets: `color::tests`.
    let mut app = online_on(64, 64, (120, 40), ColorMode::Ansi256);
    press(&mut app, [key('l')]);
    place(&mut app, 1, 3, 4, 5);
    let buf = render(&app);
    let inner = inner(&app);
    assert_eq!(buf[(inner.x + 3, inner.y + 2)].fg, Color::Indexed(160));
    assert_eq!(buf[(inner.x + 3, inner.y + 2)].bg, Color::Indexed(231));
}

#[test]
fn the_status_bar_tells_the_connection_state() {
    let mut app = online();
    app.update(net(ClientEvent::Rtt(Duration::from_micros(1500))), t0());
    let buf = render(&app);
    let status = row(&buf, areas(&app).status.y);
    for part in [
        "● connected",
        SERVER,
        "alice",
        "2 online",
        "rtt 1.5 ms",
        "? help",
    ] {
        assert!(status.contains(part), "{status:?} lacks {part:?}");
    }

    let now = t0();
    app.update(
        net(ClientEvent::Disconnected {
            reason: "cannot connect to 127.0.0.1:7878: Connection refused".into(),
            retry_in: Duration::from_secs(4),
        }),
        now,
    );
    let status = row(&render(&app), areas(&app).status.y);
    assert!(status.contains("◌ reconnecting in 4s"), "{status}");
    assert!(status.contains("Connection refused"), "{status}");
    app.update(AppEvent::Tick, now + Duration::from_millis(1500));
    let status = row(&render(&app), areas(&app).status.y);
    assert!(status.contains("reconnecting in 3s"), "{status}");

    // Placed while offline: drawn at once, counted as queued.
    press(&mut app, [key('5'), key(' ')]);
    let buf = render(&app);
    let status = row(&buf, areas(&app).status.y);
    assert!(status.contains("1 queued"), "{status}");
    assert!(status.contains("pixel is queued"), "{status}");
    let inner = inner(&app);
    // The cursor is on the queued pixel: red shows as its contrast (white);
    // move away to see the colour itself.
    press(&mut app, [key('l')]);
    assert_eq!(render(&app)[(inner.x, inner.y)].fg, RED);
}

#[test]
fn a_server_error_shows_in_the_status_bar() {
    let mut app = online();
    let tag = match &press(&mut app, [key(' ')])[..] {
        [Intent::Send { tag, .. }] => *tag,
        other => panic!("{other:?}"),
    };
    app.update(
        net(ClientEvent::Reply {
            tag,
            result: Ok(crate::protocol::Reply::Error(
                crate::protocol::WireError::new(
                    crate::protocol::ErrorCode::RateLimited,
                    "too many commands",
                ),
            )),
        }),
        t0(),
    );
    let status = row(&render(&app), areas(&app).status.y);
    assert!(
        status.contains("pixel (0,0) not placed: rate_limited: too many commands"),
        "{status}"
    );
}

#[test]
fn a_cooldown_counts_down_in_the_status_bar() {
    let mut app = online();
    let start = t0();
    let tag = match &app.update(key(' '), start)[..] {
        [Intent::Send { tag, .. }] => *tag,
        other => panic!("{other:?}"),
    };
    app.update(
        net(ClientEvent::Reply {
            tag,
            result: Ok(crate::protocol::Reply::Error(
                crate::protocol::WireError::new(crate::protocol::ErrorCode::Cooldown, "2400"),
            )),
        }),
        start,
    );
    let status = row(&render(&app), areas(&app).status.y);
    assert!(status.ends_with(" cooldown 2.4 s "), "{status:?}");
    assert!(status.contains("pixel (0,0) not placed"), "{status}");
    app.update(AppEvent::Tick, start + Duration::from_millis(1300));
    let status = row(&render(&app), areas(&app).status.y);
    assert!(status.contains("cooldown 1.1 s"), "{status}");
    app.update(AppEvent::Tick, start + Duration::from_millis(2400));
    let status = row(&render(&app), areas(&app).status.y);
    assert!(
        !status.contains("cooldown"),
        "the countdown is gone: {status}"
    );
    // The notice about the refused pixel stays its usual time.
    assert!(status.contains("pixel (0,0) not placed"), "{status}");
}

#[test]
fn in_a_narrow_terminal_the_countdown_is_the_last_thing_cut() {
    let mut app = online_on(64, 64, MIN_SIZE, ColorMode::TrueColor);
    app.update(net(ClientEvent::Rtt(Duration::from_micros(3800))), t0());
    let start = t0();
    let tag = match &app.update(key(' '), start)[..] {
        [Intent::Send { tag, .. }] => *tag,
        other => panic!("{other:?}"),
    };
    app.update(
        net(ClientEvent::Reply {
            tag,
            result: Ok(crate::protocol::Reply::Error(
                crate::protocol::WireError::new(crate::protocol::ErrorCode::Cooldown, "12000"),
            )),
        }),
        start,
    );
    let status = row(&render(&app), areas(&app).status.y);
    assert!(status.ends_with(" cooldown 12.0 s "), "{status:?}");
    // Each field whole or cut with an ellipsis, never one over another.
    assert!(
        status.starts_with(" ● connected │ pixel (0,0) not"),
        "{status:?}"
    );
    assert!(status.contains('…'), "{status:?}");
}

#[test]
fn kicked_and_banned_show_offline_with_the_reason() {
    let mut app = online();
    app.update(
        net(ClientEvent::Evicted {
            code: crate::protocol::ErrorCode::Kicked,
            text: "an admin disconnected you".into(),
        }),
        t0(),
    );
    let text = screen(&render(&app));
    let status = row(&render(&app), areas(&app).status.y);
    assert!(status.contains("○ offline"), "{status}");
    assert!(
        status.contains("kicked by an admin · r reconnects"),
        "{status}"
    );
    assert!(text.contains("you; press r"), "{text}");

    let mut app = online();
    app.update(
        net(ClientEvent::Evicted {
            code: crate::protocol::ErrorCode::Banned,
            text: "an admin banned you from this server".into(),
        }),
        t0(),
    );
    let status = row(&render(&app), areas(&app).status.y);
    assert!(
        status.contains("○ offline") && status.contains("banned from this server"),
        "{status}"
    );
}

#[test]
fn the_whose_answer_shows_in_the_status_bar_and_the_chat() {
    let mut app = online();
    let now = t0();
    app.session.wall = crate::client::app::status::WallClock {
        at: now,
        unix_ms: 1_700_000_000_000,
    };
    let tag = match &app.update(key('w'), now)[..] {
        [Intent::Send { tag, .. }] => *tag,
        other => panic!("{other:?}"),
    };
    app.update(
        net(ClientEvent::Reply {
            tag,
            result: Ok(crate::protocol::Reply::Whose(Some(
                crate::protocol::Placement {
                    name: "bob".into(),
                    unix_ms: 1_700_000_000_000 - 42_000,
                    seq: 7,
                },
            ))),
        }),
        now,
    );
    let buf = render(&app);
    let status = row(&buf, areas(&app).status.y);
    let want = "(0,0) placed by bob 42 s ago, seq 7";
    assert!(status.contains(want), "{status}");
    let x = status.find(want).unwrap();
    let cell = &buf[(status[..x].chars().count() as u16, areas(&app).status.y)];
    assert_eq!(cell.fg, Color::LightCyan, "an answer, not an error");
    assert!(screen(&buf).contains(&format!("· {want}")));
}

#[test]
fn in_a_small_terminal_the_canvas_scrolls_with_the_cursor() {
    let mut app = online_on(64, 64, (80, 24), ColorMode::TrueColor);
    place(&mut app, 1, 0, 0, 5);
    place(&mut app, 2, 63, 63, 12);
    let inner = inner(&app);
    assert!(inner.width < 64 && inner.height < 32);
    let buf = render(&app);
    // Top-left pixel is at the top-left cell; the cursor is on it.
    let cursor = buf[(inner.x, inner.y)].fg;
    assert!(cursor != RED && cursor != WHITE, "{cursor:?}");
    press(&mut app, vec![key('L'); 8]);
    press(&mut app, vec![key('J'); 8]);
    let buf = render(&app);
    // The bottom-right pixel is now the bottom-right cell's upper half
    // (64 is even: the last row of cells holds rows 62 and 63).
    let corner = (inner.right() - 1, inner.bottom() - 1);
    assert_ne!(
        buf[corner].bg,
        Color::Rgb(0x00, 0x83, 0xC7),
        "(63,63) under the cursor"
    );
    press(&mut app, [key('k')]);
    let buf = render(&app);
    assert_eq!(buf[corner].bg, Color::Rgb(0x00, 0x83, 0xC7));
    assert_ne!(buf[(inner.x, inner.y)].fg, RED, "(0,0) scrolled out");
    // Every visible cell is a canvas pixel (or the overview): nothing
    // stale, nothing blank.
    let overview = app.canvas.overview_area(inner).map(|(a, _)| a);
    for y in inner.top()..inner.bottom() {
        for x in inner.left()..inner.right() {
            if overview.is_some_and(|o| o.contains(ratatui::layout::Position::new(x, y))) {
                continue;
            }
            assert_eq!(buf[(x, y)].symbol(), "▀", "({x},{y})");
        }
    }
}

#[test]
fn the_help_lists_every_key_and_colour_and_fits_80x24() {
    let mut app = online_on(64, 64, (80, 24), ColorMode::TrueColor);
    press(&mut app, [key('?')]);
    // At 80x24 it is one column, taller than the screen: scrolling shows
    // the rest, and every line is seen on the way.
    let mut text = screen(&render(&app));
    assert!(text.contains("↓↑ scroll"), "{text}");
    for _ in 0..20 {
        press(&mut app, [code(KeyCode::Down)]);
        text.push_str(&screen(&render(&app)));
    }
    assert_eq!(app.overlay, crate::client::app::Overlay::Help, "still open");
    for row in keys::DRAWING
        .iter()
        .chain(keys::CHATTING)
        .chain(keys::ANYWHERE)
    {
        assert!(
            text.contains(row.keys),
            "help lacks {:?}:\n{text}",
            row.keys
        );
        assert!(
            text.contains(row.help),
            "help lacks {:?}:\n{text}",
            row.help
        );
    }
    for (keys, help) in keys::MOUSE.iter().chain(keys::COMMANDS) {
        assert!(
            text.contains(keys) && text.contains(help),
            "help lacks {keys:?}"
        );
    }
    for (i, c) in crate::protocol::PALETTE.iter().enumerate() {
        let key = char::from_digit(i as u32, 16).unwrap();
        assert!(
            text.contains(&format!("{key}    {}", c.name)),
            "help lacks colour {key} {}",
            c.name
        );
    }
    // Any other key closes it.
    press(&mut app, [key('x')]);
    assert_eq!(app.overlay, crate::client::app::Overlay::None);
}

#[test]
fn the_chat_shows_messages_dms_and_the_focused_input() {
    let mut app = online();
    let ev = |e| net(ClientEvent::Event(e));
    press(
        &mut app,
        [
            ev(Event::Msg {
                from: Arc::from("bob"),
                text: Arc::from("hi alice"),
            }),
            ev(Event::Dm {
                from: Arc::from("bob"),
                text: Arc::from("secret"),
            }),
        ],
    );
    let buf = render(&app);
    let text = screen(&buf);
    assert!(text.contains("bob: hi alice"));
    assert!(text.contains("[dm] bob: secret"));
    assert!(text.contains("> Enter to chat"));

    press(&mut app, [code(KeyCode::Enter), key('y'), key('o')]);
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    terminal.draw(|frame| draw(frame, &app)).unwrap();
    let input = areas(&app).input;
    assert!(row(terminal.backend().buffer(), input.y).contains("> yo"));
    terminal
        .backend_mut()
        .assert_cursor_position((input.x + 4, input.y));
}

#[test]
fn the_login_screen_shows_why_a_name_was_refused() {
    let mut app = App::new(SERVER, None, ColorMode::TrueColor);
    app.start();
    app.update(
        AppEvent::Resize {
            width: 80,
            height: 24,
        },
        t0(),
    );
    press(&mut app, "alice".chars().map(key));
    press(&mut app, [code(KeyCode::Enter)]);
    app.update(
        net(ClientEvent::LoginRejected(crate::client::LoginError::Name(
            crate::protocol::WireError::new(
                crate::protocol::ErrorCode::NameTaken,
                "alice is already online",
            ),
        ))),
        t0(),
    );
    let text = screen(&render(&app));
    assert!(text.contains("name  alice"), "{text}");
    assert!(text.contains("alice is already online"), "{text}");
    assert!(text.contains(SERVER));
    assert!(matches!(app.session.link, Link::Idle));
}

#[test]
fn a_tiny_terminal_says_so_instead_of_drawing_garbage() {
    let mut app = online();
    app.update(
        AppEvent::Resize {
            width: 40,
            height: 10,
        },
        t0(),
    );
    let text = screen(&render(&app));
    assert!(text.contains("Too small: 40x10"), "{text}");
    assert!(text.contains("(pixchat needs 50x12)"), "{text}");
}

/// The login screen after the server asked for a password, `typed` typed
/// into the password field.
fn password_screen(typed: &str) -> App {
    let mut app = App::new(SERVER, Some("alice".into()), ColorMode::TrueColor);
    app.start();
    app.update(
        AppEvent::Resize {
            width: 80,
            height: 24,
        },
        t0(),
    );
    app.update(
        net(ClientEvent::LoginRejected(
            crate::client::LoginError::PasswordRequired(crate::protocol::WireError::new(
                crate::protocol::ErrorCode::Forbidden,
                "this server needs a password: AUTH <password> first",
            )),
        )),
        t0(),
    );
    press(&mut app, typed.chars().map(key));
    app
}

#[test]
fn the_password_field_is_masked() {
    // Letters that appear nowhere else on this screen.
    let secret = "ZQXJVY";
    let app = password_screen(secret);
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|frame| draw(frame, &app)).unwrap();
    let buf = terminal.backend().buffer().clone();
    let text = screen(&buf);
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            let symbol = buf[(x, y)].symbol();
            assert!(
                !secret.chars().any(|c| symbol.contains(c)),
                "plaintext {symbol:?} at ({x},{y}):\n{text}"
            );
        }
    }
    let line = text
        .lines()
        .find(|l| l.contains("password  "))
        .unwrap_or_else(|| panic!("no password field:\n{text}"));
    assert!(line.contains("password  ••••••"), "{line}");
    assert!(!line.contains("•••••••"), "one dot per character: {line}");
    assert!(text.contains("name      alice"), "{text}");
    assert!(text.contains("this server needs a password"), "{text}");
    assert!(text.contains("Tab switches field"), "{text}");
    // The cursor sits after the last dot.
    let (cx, cy) = (
        line.find('•').map(|b| line[..b].chars().count()).unwrap() as u16 + 6,
        text.lines().position(|l| l == line).unwrap() as u16,
    );
    terminal.backend_mut().assert_cursor_position((cx, cy));
}

/// The text of row `y` between columns `x0` and `x1`, a wide character
/// read once (the cell it covers is skipped), trailing blanks dropped.
fn text_between(buf: &Buffer, y: u16, x0: u16, x1: u16) -> String {
    use ratatui::buffer::CellWidth;
    let mut text = String::new();
    let mut x = x0;
    while x < x1 {
        let symbol = buf[(x, y)].symbol();
        text.push_str(symbol);
        x += symbol.cell_width().max(1);
    }
    text.trim_end().to_string()
}

/// The chat rows the state counts, as text.
fn state_rows(app: &App, width: u16) -> Vec<String> {
    app.chat
        .rows(width)
        .iter()
        .map(|row| row.iter().map(|(_, s)| *s).collect::<String>())
        .map(|s| s.trim_end().to_string())
        .collect()
}

#[test]
fn chat_scrolling_counts_the_wrapped_rows_that_are_drawn() {
    let mut app = online_on(64, 64, (80, 24), ColorMode::TrueColor);
    // Without the stamps, which change with the clock.
    press(&mut app, [key('T')]);
    let say = |from: &str, text: &str| {
        net(ClientEvent::Event(Event::Msg {
            from: Arc::from(from),
            text: Arc::from(text),
        }))
    };
    press(
        &mut app,
        (0..12).map(|i| match i % 4 {
            0 => say(
                "bob",
                &format!("{i}: a line long enough to wrap onto a second row"),
            ),
            1 => say("carol", &format!("{i}: 漢字の行も二列ずつ数えて折り返す")),
            2 => say(
                "bob",
                &format!("{i}: https://example.com/a/very/long/word/that/breaks"),
            ),
            _ => say("dave", &format!("{i}: short")),
        }),
    );
    let messages = areas(&app).messages;
    let (width, height) = (messages.width, usize::from(messages.height));
    let rows = state_rows(&app, width);
    assert!(
        rows.len() > app.chat.lines.len() + 12,
        "lines wrap: {rows:#?}"
    );
    // The first line is the join note, wrapped as the README shows it.
    assert_eq!(rows[..2], ["· joined as alice (canvas", "64x64, seq 0)"]);
    let drawn = |app: &App| -> Vec<String> {
        let buf = render(app);
        (messages.y..messages.bottom())
            .map(|y| text_between(&buf, y, messages.x, messages.right()))
            .collect()
    };

    // Following: the last rows.
    assert_eq!(drawn(&app), rows[rows.len() - height..]);
    // Each PgUp goes back half a pane of rows, until the first row is on
    // top; the title says how far back.
    let page = height / 2;
    let mut back = 0;
    while back < rows.len() - height {
        press(&mut app, [code(KeyCode::PageUp)]);
        back = (back + page).min(rows.len() - height);
        let top = rows.len() - height - back;
        assert_eq!(drawn(&app), rows[top..top + height], "{back} rows back");
        let title = row(&render(&app), areas(&app).chat.y);
        assert!(title.contains(&format!("↑{back} · End follows")), "{title}");
    }
    assert_eq!(drawn(&app)[0], rows[0]);
    press(&mut app, [code(KeyCode::End)]);
    assert_eq!(drawn(&app), rows[rows.len() - height..]);
}

#[test]
fn a_click_lands_on_the_pixel_drawn_under_it() {
    use ratatui::crossterm::event::{KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
    // A canvas larger than the window, scrolled to the bottom right.
    let mut app = online_on(64, 64, (80, 24), ColorMode::TrueColor);
    press(&mut app, vec![key('L'); 8]);
    press(&mut app, vec![key('J'); 8]);
    assert_ne!(app.canvas.origin, (0, 0), "scrolled");
    place(&mut app, 1, 45, 56, 5);
    let buf = render(&app);
    let inner = inner(&app);
    let red: Vec<(u16, u16)> = (inner.top()..inner.bottom())
        .flat_map(|y| (inner.left()..inner.right()).map(move |x| (x, y)))
        .filter(|&at| buf[at].fg == RED)
        .collect();
    assert_eq!(red.len(), 1, "one red upper half on screen");
    let (column, row) = red[0];
    let click = AppEvent::Mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column,
        row,
        modifiers: KeyModifiers::NONE,
    });
    let intents = press(&mut app, [click]);
    assert!(
        matches!(
            &intents[..],
            [Intent::Send {
                cmd: crate::protocol::Command::Set { x: 45, y: 56, .. },
                ..
            }]
        ),
        "{intents:?}"
    );
    // The border around the pixels is no pixel, and a terminal too small
    // to draw the canvas takes no clicks.
    let border = AppEvent::Mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: inner.x - 1,
        row,
        modifiers: KeyModifiers::NONE,
    });
    assert!(press(&mut app, [border.clone()]).is_empty());
    app.update(
        AppEvent::Resize {
            width: 40,
            height: 10,
        },
        t0(),
    );
    assert_eq!(app.layout, None);
    assert!(press(&mut app, [border]).is_empty());
}

#[test]
fn with_no_color_nothing_is_coloured_and_the_canvas_is_ink_on_paper() {
    let mut app = online_on(64, 64, (120, 40), ColorMode::NoColor);
    place(&mut app, 1, 10, 4, 3);
    place(&mut app, 2, 11, 5, 3);
    let buf = render(&app);
    assert!(
        buf.content
            .iter()
            .all(|c| c.fg == Color::Reset && c.bg == Color::Reset),
        "a colour was drawn"
    );
    let inner = inner(&app);
    // Black at (10,4) is the upper dot of cell (10,2), (11,5) the lower
    // of (11,2); white is paper.
    assert_eq!(buf[(inner.x + 10, inner.y + 2)].symbol(), "▀");
    assert_eq!(buf[(inner.x + 11, inner.y + 2)].symbol(), "▄");
    assert_eq!(buf[(inner.x + 12, inner.y + 2)].symbol(), " ");
    // The cursor, at (0,0), is shown reversed.
    assert!(
        buf[(inner.x, inner.y)]
            .modifier
            .contains(Modifier::REVERSED)
    );
}

#[test]
fn offline_the_title_names_the_colour_drawn_not_the_servers() {
    let mut app = online_on(64, 64, (120, 40), ColorMode::TrueColor);
    app.update(
        net(ClientEvent::Disconnected {
            reason: "gone".into(),
            retry_in: Duration::from_secs(5),
        }),
        t0(),
    );
    // Red placed offline: queued, drawn, and named in the title.
    press(&mut app, [key('5'), key(' ')]);
    assert_eq!(app.canvas.queued(), 1);
    let buf = render(&app);
    let title = row(&buf, areas(&app).canvas.y);
    assert!(title.contains("(0,0) red"), "{title}");
}
