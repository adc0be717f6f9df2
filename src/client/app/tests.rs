//! Key presses and server reports driven into the state, checked the way a
//! user would notice them.

use std::sync::Arc;
use std::time::Duration;

use ratatui::crossterm::event::{KeyCode, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};

use super::canvas::PendingPixel;
use super::chat::{CHAT_LINES, ChatLine};
use super::palette;
use super::status::{NOTICE_TIME, NoticeKind, WallClock, format_ago, format_tenths};
use super::*;
use crate::client::LoginError;
use crate::client::net::{ClientEvent, RequestError};
use crate::client::testing::*;
use crate::protocol::{ErrorCode, Event, Pixel, Placement, Reply, WireError};

fn press(app: &mut App, events: impl IntoIterator<Item = AppEvent>) -> Vec<Intent> {
    events
        .into_iter()
        .flat_map(|e| app.update(e, t0()))
        .collect()
}

fn typed(text: &str) -> Vec<AppEvent> {
    text.chars().map(key).collect()
}

fn sent(intents: &[Intent]) -> Vec<(u64, Command)> {
    intents
        .iter()
        .filter_map(|i| match i {
            Intent::Send { tag, cmd } => Some((*tag, cmd.clone())),
            _ => None,
        })
        .collect()
}

fn pixel(seq: u64, x: u16, y: u16, color: u8) -> AppEvent {
    net(ClientEvent::Event(Event::Pixel(Pixel {
        seq,
        x,
        y,
        color,
        name: Arc::from("bob"),
    })))
}

fn reply(tag: u64, reply: Reply) -> AppEvent {
    net(ClientEvent::Reply {
        tag,
        result: Ok(reply),
    })
}

fn error(code: ErrorCode, message: &str) -> Reply {
    Reply::Error(WireError::new(code, message))
}

#[test]
fn arrows_and_hjkl_move_the_cursor_within_the_canvas() {
    let mut app = online();
    press(&mut app, [key('l'), key('l'), code(KeyCode::Right)]);
    press(
        &mut app,
        [key('j'), code(KeyCode::Down), key('j'), key('j')],
    );
    assert_eq!(app.canvas.cursor, (3, 4));
    press(&mut app, [key('k'), code(KeyCode::Up), key('h')]);
    assert_eq!(app.canvas.cursor, (2, 2));
    // Shift moves 8, and the edges hold.
    press(&mut app, [shift(KeyCode::Right)]);
    assert_eq!(app.canvas.cursor, (7, 2));
    press(&mut app, [key('J')]);
    assert_eq!(app.canvas.cursor, (7, 5));
    press(&mut app, [key('H'), key('K'), key('h'), key('k')]);
    assert_eq!(app.canvas.cursor, (0, 0));
}

#[test]
fn space_places_the_selected_colour_and_the_reply_settles_it() {
    let mut app = online();
    press(&mut app, typed("lllljj"));
    let intents = press(&mut app, [key('5'), key(' ')]);
    let sends = sent(&intents);
    assert_eq!(
        sends.iter().map(|s| s.1.clone()).collect::<Vec<_>>(),
        vec![Command::Set {
            x: 4,
            y: 2,
            color: 5
        }]
    );
    let tag = sends[0].0;
    assert_eq!(
        app.canvas.pending,
        vec![PendingPixel {
            x: 4,
            y: 2,
            color: 5,
            tag: Some(tag)
        }]
    );
    press(
        &mut app,
        [reply(tag, Reply::Set { seq: 1 }), pixel(1, 4, 2, 5)],
    );
    assert!(app.canvas.pending.is_empty());
    let canvas = app.canvas.pixels.as_ref().unwrap();
    assert_eq!((canvas.get(4, 2), canvas.seq), (Some(5), 1));
}

#[test]
fn palette_keys_step_wrap_and_pick() {
    let mut app = online();
    press(&mut app, [key('0'), key('[')]);
    assert_eq!(app.palette.selected, 15);
    press(&mut app, [key(']'), key(']')]);
    assert_eq!(app.palette.selected, 1);
    press(&mut app, [key('a')]);
    assert_eq!(app.palette.selected, 10);
    press(&mut app, [key('f')]);
    assert_eq!(
        (app.palette.selected, app.palette.name(app.palette.selected)),
        (15, "purple")
    );
}

#[test]
fn pixel_events_apply_in_seq_order_and_a_gap_asks_for_the_canvas() {
    let mut app = online();
    press(&mut app, [pixel(1, 0, 0, 5), pixel(2, 1, 0, 6)]);
    // A replayed event the canvas already has changes nothing.
    press(&mut app, [pixel(1, 0, 0, 9)]);
    let canvas = app.canvas.pixels.as_ref().unwrap();
    assert_eq!(
        (canvas.get(0, 0), canvas.get(1, 0), canvas.seq),
        (Some(5), Some(6), 2)
    );
    let intents = press(&mut app, [pixel(5, 2, 0, 7)]);
    let sends = sent(&intents);
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].1, Command::Canvas);
    // Only one repair at a time.
    assert!(sent(&press(&mut app, [pixel(7, 2, 0, 7)])).is_empty());
    let mut fixed = (*snapshot(1, 8, 6, 7)).clone();
    fixed.pixels[3] = 12;
    press(
        &mut app,
        [reply(sends[0].0, Reply::Canvas(Arc::new(fixed)))],
    );
    let canvas = app.canvas.pixels.as_ref().unwrap();
    assert_eq!((canvas.get(3, 0), canvas.seq), (Some(12), 7));
}

#[test]
fn pixels_placed_offline_are_queued_then_sent_after_reconnect() {
    let mut app = online();
    press(
        &mut app,
        [net(ClientEvent::Disconnected {
            reason: "the server closed the connection".into(),
            retry_in: Duration::from_secs(2),
        })],
    );
    assert!(matches!(app.session.link, Link::Retrying { .. }));
    assert!(app.users.names.is_empty());
    let intents = press(&mut app, [key('l'), key('7'), key(' ')]);
    assert!(sent(&intents).is_empty(), "nothing goes out offline");
    assert_eq!(app.canvas.queued(), 1);
    assert!(app.status.notice.as_ref().unwrap().text.contains("queued"));

    // Back, resumed: the queued pixel goes out.
    let snap = snapshot(1, 8, 6, 0);
    let intents = press(
        &mut app,
        [net(ClientEvent::Joined {
            welcome: welcome("alice", &snap, &["alice"], true),
            snapshot: None,
        })],
    );
    let sends = sent(&intents);
    assert_eq!(
        sends.iter().map(|s| s.1.clone()).collect::<Vec<_>>(),
        vec![Command::Set {
            x: 1,
            y: 0,
            color: 7
        }]
    );
    assert_eq!(app.canvas.queued(), 0);
    // Lost again before the answer: queued again, not dropped.
    press(
        &mut app,
        [net(ClientEvent::Reply {
            tag: sends[0].0,
            result: Err(RequestError::ConnectionLost),
        })],
    );
    assert_eq!(app.canvas.queued(), 1);
}

#[test]
fn a_server_error_is_a_brief_notice_not_a_crash() {
    let mut app = online();
    let tag = sent(&press(&mut app, [key(' ')]))[0].0;
    let start = t0();
    app.update(
        reply(tag, error(ErrorCode::RateLimited, "slow down")),
        start,
    );
    assert!(app.canvas.pending.is_empty(), "a refused pixel is not kept");
    let notice = app.status.notice.clone().expect("a notice");
    assert!(notice.text.contains("rate_limited"), "{}", notice.text);
    app.update(AppEvent::Tick, start + NOTICE_TIME / 2);
    assert!(app.status.notice.is_some());
    app.update(AppEvent::Tick, start + NOTICE_TIME);
    assert!(
        app.status.notice.is_none(),
        "the notice goes away by itself"
    );
    assert_eq!(app.session.link, Link::Online);
}

#[test]
fn enter_focuses_chat_enter_sends_and_esc_returns() {
    let mut app = online();
    press(&mut app, [code(KeyCode::Enter)]);
    assert_eq!(app.focus, Focus::Chat);
    // Drawing keys type in the chat: q does not quit here.
    let intents = press(&mut app, typed("hi q"));
    assert!(intents.is_empty(), "{intents:?}");
    let intents = press(&mut app, [code(KeyCode::Enter)]);
    assert_eq!(
        sent(&intents)[0].1,
        Command::Say {
            text: "hi q".into()
        }
    );
    assert_eq!(app.chat.input.value(), "");
    assert_eq!(app.focus, Focus::Chat);
    press(&mut app, typed("draft"));
    press(&mut app, [code(KeyCode::Esc)]);
    assert_eq!(app.focus, Focus::Canvas);
    assert_eq!(app.chat.input.value(), "draft", "Esc keeps the text");
    // An empty Enter goes back to drawing too.
    press(
        &mut app,
        [code(KeyCode::Enter), ctrl('u'), code(KeyCode::Enter)],
    );
    assert_eq!(app.focus, Focus::Canvas);
}

#[test]
fn tell_and_who_commands() {
    let mut app = online();
    let intents = press(&mut app, [key('/')]);
    assert!(intents.is_empty());
    assert_eq!((app.focus, app.chat.input.value()), (Focus::Chat, "/"));
    press(&mut app, typed("tell bob see you"));
    let sends = sent(&press(&mut app, [code(KeyCode::Enter)]));
    assert_eq!(
        sends[0].1,
        Command::Tell {
            to: "bob".into(),
            text: "see you".into()
        }
    );
    press(&mut app, [reply(sends[0].0, Reply::Ok)]);
    assert_eq!(
        app.chat.lines.back(),
        Some(&ChatLine::DmOut {
            to: "bob".into(),
            text: "see you".into()
        })
    );

    press(&mut app, typed("/who"));
    let sends = sent(&press(&mut app, [code(KeyCode::Enter)]));
    assert_eq!(sends[0].1, Command::Who);
    press(
        &mut app,
        [reply(
            sends[0].0,
            Reply::Who {
                online: 3,
                users: vec!["alice".into(), "bob".into(), "Carol".into()],
            },
        )],
    );
    assert_eq!(
        app.chat.lines.back(),
        Some(&ChatLine::Info("online (3): alice, bob, Carol".into()))
    );
    assert_eq!(app.users.names, ["alice", "bob", "Carol"]);

    press(&mut app, typed("/tell bob"));
    assert!(sent(&press(&mut app, [code(KeyCode::Enter)])).is_empty());
    assert_eq!(
        app.chat.lines.back(),
        Some(&ChatLine::Error("usage: /tell NAME text".into()))
    );
}

#[test]
fn a_dm_to_nobody_shows_the_server_error_and_up_brings_the_line_back() {
    let mut app = online();
    press(&mut app, [code(KeyCode::Enter)]);
    press(&mut app, typed("/tell zed hi"));
    let tag = sent(&press(&mut app, [code(KeyCode::Enter)]))[0].0;
    press(
        &mut app,
        [reply(
            tag,
            error(ErrorCode::NoSuchUser, "nobody called zed is online"),
        )],
    );
    assert_eq!(
        app.chat.lines.back(),
        Some(&ChatLine::Error(
            "no_such_user: nobody called zed is online (↑ brings the line back)".into()
        ))
    );
    // The input is not refilled behind the user's back: what they type
    // next is a line of its own, not glued to the failed one.
    assert_eq!(app.chat.input.value(), "");
    let next = sent(&press(
        &mut app,
        typed("hello").into_iter().chain([code(KeyCode::Enter)]),
    ));
    assert_eq!(
        next[0].1,
        Command::Say {
            text: "hello".into()
        }
    );
    // ↑ twice brings the failed line back to fix it; ↓ returns.
    press(&mut app, [code(KeyCode::Up), code(KeyCode::Up)]);
    assert_eq!(app.chat.input.value(), "/tell zed hi");
    press(&mut app, [code(KeyCode::Down)]);
    assert_eq!(app.chat.input.value(), "hello");
    press(&mut app, [code(KeyCode::Down)]);
    assert_eq!(app.chat.input.value(), "", "back to the empty line typed");
}

#[test]
fn chat_offline_is_not_sent_and_the_text_stays() {
    let mut app = online();
    press(
        &mut app,
        [net(ClientEvent::Disconnected {
            reason: "gone".into(),
            retry_in: Duration::from_secs(1),
        })],
    );
    press(&mut app, [code(KeyCode::Enter)]);
    press(&mut app, typed("anyone?"));
    assert!(sent(&press(&mut app, [code(KeyCode::Enter)])).is_empty());
    assert_eq!(app.chat.input.value(), "anyone?");
    assert!(
        app.status
            .notice
            .as_ref()
            .unwrap()
            .text
            .contains("not sent")
    );
}

#[test]
fn chat_events_fill_the_scrollback_and_the_user_list() {
    let mut app = online();
    let ev = |e: Event| net(ClientEvent::Event(e));
    press(
        &mut app,
        [
            ev(Event::Joined {
                name: Arc::from("carol"),
            }),
            ev(Event::Msg {
                from: Arc::from("carol"),
                text: Arc::from("hello all"),
            }),
            ev(Event::Dm {
                from: Arc::from("bob"),
                text: Arc::from("psst"),
            }),
            ev(Event::Left {
                name: Arc::from("bob"),
            }),
        ],
    );
    let tail: Vec<&ChatLine> = app.chat.lines.iter().rev().take(4).rev().collect();
    assert_eq!(
        tail,
        [
            &ChatLine::Joined("carol".into()),
            &ChatLine::Msg {
                from: "carol".into(),
                text: "hello all".into()
            },
            &ChatLine::DmIn {
                from: "bob".into(),
                text: "psst".into()
            },
            &ChatLine::Left("bob".into()),
        ]
    );
    assert_eq!(app.users.names, ["alice", "carol"]);
}

#[test]
fn login_screen_checks_the_name_and_shows_the_servers_refusal() {
    let mut app = App::new(SERVER, None, ColorMode::TrueColor);
    assert!(app.start().is_empty());
    assert!(matches!(app.screen, Screen::Login(_)));
    let intents = press(&mut app, typed("bad name"));
    assert!(intents.is_empty());
    assert!(press(&mut app, [code(KeyCode::Enter)]).is_empty());
    let Screen::Login(form) = &app.screen else {
        panic!("still on the login screen");
    };
    assert!(form.error.as_ref().unwrap().contains("letters, digits"));

    press(&mut app, [ctrl('u')]);
    press(&mut app, typed("alice"));
    let intents = press(&mut app, [code(KeyCode::Enter)]);
    assert_eq!(intents, vec![Intent::Login(Login::new("alice"))]);
    press(
        &mut app,
        [net(ClientEvent::LoginRejected(LoginError::Name(
            WireError::new(ErrorCode::NameTaken, "alice is already online"),
        )))],
    );
    let Screen::Login(form) = &app.screen else {
        panic!("back on the login screen");
    };
    assert_eq!(form.error.as_deref(), Some("alice is already online"));
    assert_eq!(form.name.value(), "alice", "the name stays to be edited");
    // 'q' is a letter of a name here, not quit.
    assert!(press(&mut app, [key('q')]).is_empty());
    assert_eq!(press(&mut app, [code(KeyCode::Esc)]), vec![Intent::Quit]);
}

#[test]
fn an_invalid_name_flag_opens_the_login_screen_with_the_reason() {
    let mut app = App::new(SERVER, Some("no spaces".into()), ColorMode::TrueColor);
    assert!(app.start().is_empty(), "nothing is sent for a bad name");
    let Screen::Login(form) = &app.screen else {
        panic!("login screen");
    };
    assert_eq!(form.name.value(), "no spaces");
    assert!(form.error.is_some());
}

#[test]
fn a_restarted_server_with_a_new_canvas_replaces_the_old_one() {
    let mut app = online();
    press(&mut app, [pixel(1, 2, 2, 5)]);
    press(
        &mut app,
        [net(ClientEvent::Disconnected {
            reason: "gone".into(),
            retry_in: Duration::from_secs(1),
        })],
    );
    // The last canvas stays on screen while offline.
    assert_eq!(app.canvas.pixels.as_ref().unwrap().get(2, 2), Some(5));
    let mut fresh = (*snapshot(2, 8, 6, 1)).clone();
    fresh.pixels[1] = 10;
    let fresh = Arc::new(fresh);
    press(&mut app, [joined(fresh, &["alice"])]);
    let canvas = app.canvas.pixels.as_ref().unwrap();
    assert_eq!((canvas.id, canvas.seq), (2, 1));
    assert_eq!((canvas.get(2, 2), canvas.get(1, 0)), (Some(0), Some(10)));
    assert!(
        app.chat
            .lines
            .iter()
            .any(|l| matches!(l, ChatLine::Info(t) if t.contains("new canvas")))
    );
    assert_eq!(app.session.link, Link::Online);
}

#[test]
fn q_and_ctrl_c_quit_and_signals_too() {
    let mut app = online();
    assert_eq!(press(&mut app, [key('q')]), vec![Intent::Quit]);
    press(&mut app, [code(KeyCode::Enter)]);
    assert_eq!(press(&mut app, [ctrl('c')]), vec![Intent::Quit]);
    assert_eq!(press(&mut app, [AppEvent::Quit]), vec![Intent::Quit]);
}

#[test]
fn question_mark_opens_help_and_any_key_closes_it() {
    let mut app = online();
    press(&mut app, [key('?')]);
    assert_eq!(app.overlay, Overlay::Help);
    // The closing key does nothing else.
    assert!(press(&mut app, [key(' ')]).is_empty());
    assert_eq!(app.overlay, Overlay::None);
}

#[test]
fn a_click_places_at_the_clicked_pixel_and_a_second_click_reaches_the_lower_half() {
    // 64x64 in 120x40 is drawn at 1:1: a cell is two pixels.
    let mut app = online_on(64, 64, (120, 40), ColorMode::TrueColor);
    assert_eq!(app.canvas.zoom, super::viewport::Zoom::In(1));
    let areas = app.layout.expect("a layout for 120x40");
    let inner = areas.canvas_inner;
    let click = |col: u16, row: u16| {
        AppEvent::Mouse(MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column: col,
            row,
            modifiers: KeyModifiers::NONE,
        })
    };
    press(&mut app, [key('5')]);
    let first = sent(&press(&mut app, [click(inner.x + 3, inner.y + 2)]));
    assert_eq!(
        first[0].1,
        Command::Set {
            x: 3,
            y: 4,
            color: 5
        }
    );
    assert_eq!(app.canvas.cursor, (3, 4));
    let second = sent(&press(&mut app, [click(inner.x + 3, inner.y + 2)]));
    assert_eq!(
        second[0].1,
        Command::Set {
            x: 3,
            y: 5,
            color: 5
        }
    );
    // A click on a palette swatch selects it.
    let slot = palette::slot(areas.palette, 12);
    press(&mut app, [click(slot.x + 2, slot.y)]);
    assert_eq!(app.palette.selected, 12);
}

#[test]
fn the_view_follows_the_cursor_on_a_canvas_larger_than_the_window() {
    let mut app = App::new(SERVER, Some("alice".into()), ColorMode::TrueColor);
    app.start();
    app.update(
        AppEvent::Resize {
            width: 80,
            height: 24,
        },
        t0(),
    );
    app.update(joined(snapshot(1, 64, 64, 0), &["alice"]), t0());
    assert_eq!(app.canvas.origin, (0, 0));
    let inner = app.layout.unwrap().canvas_inner;
    assert!(inner.width < 64 && inner.height < 32, "{inner:?}");
    // The view starts moving before the cursor reaches its edge: a
    // quarter of it stays ahead.
    press(
        &mut app,
        vec![key('l'); usize::from(inner.width - inner.width / 4)],
    );
    assert_eq!(app.canvas.origin.0, 1);
    press(&mut app, vec![key('L'); 8]);
    press(&mut app, vec![key('J'); 8]);
    assert_eq!(app.canvas.cursor, (63, 63));
    assert_eq!(
        app.canvas.origin,
        (
            64 - u32::from(inner.width),
            64 - 2 * u32::from(inner.height)
        )
    );
    press(&mut app, vec![key('H'); 8]);
    assert_eq!(app.canvas.origin.0, 0);
    // A bigger window shows it all again.
    app.update(
        AppEvent::Resize {
            width: 120,
            height: 40,
        },
        t0(),
    );
    assert_eq!(app.canvas.origin, (0, 0));
}

#[test]
fn chat_scrolls_back_and_follows_again() {
    let mut app = online();
    for i in 0..100 {
        app.update(
            net(ClientEvent::Event(Event::Msg {
                from: Arc::from("bob"),
                text: Arc::from(format!("line {i}").as_str()),
            })),
            t0(),
        );
    }
    press(&mut app, [code(KeyCode::PageUp)]);
    let one_page = app.chat.scroll;
    assert!(one_page > 0);
    press(&mut app, [code(KeyCode::PageUp), code(KeyCode::PageDown)]);
    assert_eq!(app.chat.scroll, one_page);
    press(&mut app, [code(KeyCode::End)]);
    assert_eq!(app.chat.scroll, 0);
    for _ in 0..100 {
        press(&mut app, [code(KeyCode::PageUp)]);
    }
    assert!(app.chat.scroll < 110, "scrolling stops at the top");
}

#[test]
fn the_chat_keeps_a_bounded_scrollback() {
    let mut app = online();
    for i in 0..CHAT_LINES + 10 {
        app.update(
            net(ClientEvent::Event(Event::Msg {
                from: Arc::from("bob"),
                text: Arc::from(format!("{i}").as_str()),
            })),
            t0(),
        );
    }
    assert_eq!(app.chat.lines.len(), CHAT_LINES);
    assert_eq!(
        app.chat.lines.back(),
        Some(&ChatLine::Msg {
            from: "bob".into(),
            text: format!("{}", CHAT_LINES + 9)
        })
    );
}

fn login_form(app: &App) -> &LoginForm {
    match &app.screen {
        Screen::Login(form) => form,
        Screen::Main => panic!("expected the login screen"),
    }
}

fn rejected(e: LoginError) -> AppEvent {
    net(ClientEvent::LoginRejected(e))
}

fn needs_password() -> LoginError {
    LoginError::PasswordRequired(WireError::new(
        ErrorCode::Forbidden,
        "this server needs a password: AUTH <password> first",
    ))
}

fn with_pw(name: &str, password: &str) -> Login {
    Login::new(name).with_password(Some(password.into()))
}

#[test]
fn a_server_that_wants_a_password_gets_a_password_field() {
    let mut app = App::new(SERVER, None, ColorMode::TrueColor);
    app.start();
    assert!(login_form(&app).password.is_none(), "no field until asked");
    press(&mut app, typed("alice"));
    assert_eq!(
        press(&mut app, [code(KeyCode::Enter)]),
        vec![Intent::Login(Login::new("alice"))]
    );
    press(&mut app, [rejected(needs_password())]);
    let form = login_form(&app);
    assert_eq!(form.name.value(), "alice", "the name stays");
    assert_eq!(form.field, Field::Password, "the focus is on the password");
    assert_eq!(form.password.as_ref().unwrap().value(), "");
    assert_eq!(form.error.as_deref(), Some("this server needs a password"));
    assert_eq!(app.session.link, Link::Idle);

    // Typing goes to the password; Enter joins with both.
    press(&mut app, typed("s3cret"));
    assert_eq!(login_form(&app).name.value(), "alice");
    assert_eq!(
        press(&mut app, [code(KeyCode::Enter)]),
        vec![Intent::Login(with_pw("alice", "s3cret"))]
    );
}

#[test]
fn a_name_flag_without_a_password_lands_on_the_password_field() {
    let mut app = App::new(SERVER, Some("alice".into()), ColorMode::TrueColor);
    assert_eq!(app.start(), vec![Intent::Login(Login::new("alice"))]);
    assert!(matches!(app.screen, Screen::Main));
    press(&mut app, [rejected(needs_password())]);
    let form = login_form(&app);
    assert_eq!((form.name.value(), form.field), ("alice", Field::Password));
}

#[test]
fn tab_and_enter_move_between_name_and_password() {
    let mut app = App::new(SERVER, None, ColorMode::TrueColor);
    app.start();
    // Without a password field, Tab stays on the name (and types nothing).
    press(&mut app, [code(KeyCode::Tab)]);
    assert_eq!(login_form(&app).field, Field::Name);
    press(&mut app, typed("al"));
    press(&mut app, [code(KeyCode::Enter), rejected(needs_password())]);

    // Back to the name with Tab (or Shift-Tab), edit it, and Enter goes on
    // to the empty password rather than sending a login without one.
    press(&mut app, [code(KeyCode::Tab)]);
    assert_eq!(login_form(&app).field, Field::Name);
    press(&mut app, typed("ice"));
    assert_eq!(login_form(&app).name.value(), "alice");
    assert!(press(&mut app, [code(KeyCode::Enter)]).is_empty());
    assert_eq!(login_form(&app).field, Field::Password);
    // Enter on an empty password says what is missing.
    assert!(press(&mut app, [code(KeyCode::Enter)]).is_empty());
    assert!(
        login_form(&app)
            .error
            .as_ref()
            .unwrap()
            .contains("password")
    );
    press(&mut app, [shift(KeyCode::BackTab)]);
    assert_eq!(login_form(&app).field, Field::Name);
    press(&mut app, [code(KeyCode::Down)]);
    assert_eq!(login_form(&app).field, Field::Password);
    press(&mut app, typed("pw"));
    // From the name field, Enter joins once the password is filled in.
    press(&mut app, [code(KeyCode::Up)]);
    assert_eq!(
        press(&mut app, [code(KeyCode::Enter)]),
        vec![Intent::Login(with_pw("alice", "pw"))]
    );
}

#[test]
fn a_wrong_password_says_so_and_stays_on_the_login_screen() {
    let mut app = App::new(SERVER, Some("alice".into()), ColorMode::TrueColor)
        .with_password(Some("guess".into()));
    assert_eq!(app.start(), vec![Intent::Login(with_pw("alice", "guess"))]);
    press(
        &mut app,
        [rejected(LoginError::WrongPassword(WireError::new(
            ErrorCode::Forbidden,
            "wrong password",
        )))],
    );
    let form = login_form(&app);
    assert_eq!(form.error.as_deref(), Some("wrong password"));
    assert_eq!(form.field, Field::Password);
    assert_eq!(form.password.as_ref().unwrap().value(), "", "typed anew");
    assert_eq!(app.session.link, Link::Idle);
    press(&mut app, typed("right"));
    assert_eq!(
        press(&mut app, [code(KeyCode::Enter)]),
        vec![Intent::Login(with_pw("alice", "right"))]
    );

    // A banned name after a good password: back on the name, the password
    // kept (masked) so only the name needs fixing.
    press(
        &mut app,
        [rejected(LoginError::Name(WireError::new(
            ErrorCode::Forbidden,
            "alice is banned from this server",
        )))],
    );
    let form = login_form(&app);
    assert_eq!(form.field, Field::Name);
    assert_eq!(form.password.as_ref().unwrap().value(), "right");
    assert_eq!(
        form.error.as_deref(),
        Some("alice is banned from this server")
    );
    press(&mut app, [ctrl('u')]);
    press(&mut app, typed("alicia"));
    assert_eq!(
        press(&mut app, [code(KeyCode::Enter)]),
        vec![Intent::Login(with_pw("alicia", "right"))]
    );
}

#[test]
fn a_cooldown_counts_down_and_holds_pixels_until_it_ends() {
    let mut app = online();
    let start = t0();
    let tag = sent(&app.update(key(' '), start))[0].0;
    app.update(reply(tag, error(ErrorCode::Cooldown, "2400")), start);
    assert!(app.canvas.pending.is_empty(), "shown as not placed");
    assert!(
        app.status
            .notice
            .as_ref()
            .unwrap()
            .text
            .contains("(0,0) not placed"),
        "{:?}",
        app.status.notice
    );
    assert_eq!(app.cooldown_left(), Some(Duration::from_millis(2400)));
    assert!(app.animating(), "a countdown needs fast redraws");

    let later = start + Duration::from_millis(1000);
    app.update(AppEvent::Tick, later);
    assert_eq!(app.cooldown_left(), Some(Duration::from_millis(1400)));
    assert_eq!(format_tenths(app.cooldown_left().unwrap()), "1.4 s");
    // Space now would only be refused: nothing is sent, and it says why.
    assert!(sent(&app.update(key(' '), later)).is_empty());
    assert!(app.canvas.pending.is_empty());
    assert_eq!(
        app.status.notice.as_ref().unwrap().text,
        "not placed: wait for the cooldown"
    );

    let over = start + Duration::from_millis(2400);
    app.update(AppEvent::Tick, over);
    assert_eq!(app.cooldown_left(), None);
    assert!(!app.animating());
    assert_eq!(sent(&app.update(key(' '), over)).len(), 1);
}

#[test]
fn a_kick_leaves_the_client_offline_until_r() {
    let mut app = App::new(SERVER, Some("alice".into()), ColorMode::TrueColor)
        .with_password(Some("pw".into()));
    app.start();
    app.update(joined(snapshot(1, 8, 6, 0), &["alice", "bob"]), t0());
    let intents = press(
        &mut app,
        [
            net(ClientEvent::Event(Event::Bye {
                code: ErrorCode::Kicked,
                text: "an admin disconnected you".into(),
            })),
            net(ClientEvent::Evicted {
                code: ErrorCode::Kicked,
                text: "an admin disconnected you".into(),
            }),
        ],
    );
    assert!(intents.is_empty(), "no reconnect by itself: {intents:?}");
    assert!(
        matches!(&app.session.link, Link::Evicted { reason } if reason.contains("kicked")),
        "{:?}",
        app.session.link
    );
    assert!(app.users.names.is_empty());
    assert!(matches!(
        app.chat.lines.back(),
        Some(ChatLine::Error(t)) if t.contains("an admin disconnected you") && t.contains("press r")
    ));
    // The canvas stays; drawing queues as offline.
    assert!(app.canvas.pixels.is_some());
    assert!(sent(&press(&mut app, [key(' ')])).is_empty());
    assert_eq!(app.canvas.queued(), 1);
    // Ticks pass, nothing happens; r joins again with the same login.
    assert!(press(&mut app, [AppEvent::Tick, AppEvent::Tick]).is_empty());
    assert_eq!(
        press(&mut app, [key('r')]),
        vec![Intent::Login(with_pw("alice", "pw"))]
    );
    assert_eq!(app.session.link, Link::Connecting { attempt: 1 });
}

#[test]
fn a_ban_says_banned_from_this_server() {
    let mut app = online();
    press(
        &mut app,
        [net(ClientEvent::Evicted {
            code: ErrorCode::Banned,
            text: "an admin banned you from this server".into(),
        })],
    );
    assert_eq!(
        app.session.link,
        Link::Evicted {
            reason: "banned from this server".into()
        }
    );
    assert!(matches!(
        app.chat.lines.back(),
        Some(ChatLine::Error(t)) if t == "banned: an admin banned you from this server"
    ));
}

#[test]
fn r_skips_the_reconnect_countdown_but_does_nothing_online() {
    let mut app = online();
    assert!(press(&mut app, [key('r')]).is_empty());
    assert_eq!(app.session.link, Link::Online);
    press(
        &mut app,
        [net(ClientEvent::Disconnected {
            reason: "gone".into(),
            retry_in: Duration::from_secs(20),
        })],
    );
    assert_eq!(
        press(&mut app, [key('r')]),
        vec![Intent::Login(Login::new("alice"))]
    );
}

#[test]
fn w_asks_who_placed_the_pixel_under_the_cursor_and_shows_the_answer() {
    let mut app = online();
    let now = t0();
    app.session.wall = WallClock {
        at: now,
        unix_ms: 1_700_000_000_000,
    };
    press(&mut app, [key('l'), key('l'), key('j')]);
    let intents = app.update(key('w'), now);
    let sends = sent(&intents);
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].1, Command::Whose { x: 2, y: 1 });
    app.update(
        reply(
            sends[0].0,
            Reply::Whose(Some(Placement {
                name: "bob".into(),
                unix_ms: 1_700_000_000_000 - 125_000,
                seq: 17,
            })),
        ),
        now,
    );
    let want = "(2,1) placed by bob 2 min ago, seq 17";
    assert_eq!(app.chat.lines.back(), Some(&ChatLine::Info(want.into())));
    let notice = app.status.notice.as_ref().unwrap();
    assert_eq!(
        (notice.text.as_str(), notice.kind),
        (want, NoticeKind::Info)
    );

    let tag = sent(&app.update(key('w'), now))[0].0;
    app.update(reply(tag, Reply::Whose(None)), now);
    assert_eq!(
        app.chat.lines.back(),
        Some(&ChatLine::Info("(2,1) nobody has placed this pixel".into()))
    );

    // Offline there is nobody to ask.
    app.update(
        net(ClientEvent::Disconnected {
            reason: "gone".into(),
            retry_in: Duration::from_secs(1),
        }),
        now,
    );
    assert!(sent(&app.update(key('w'), now)).is_empty());
}

#[test]
fn ages_read_as_people_say_them() {
    assert_eq!(format_ago(400), "just now");
    assert_eq!(format_ago(42_000), "42 s ago");
    assert_eq!(format_ago(125_000), "2 min ago");
    assert_eq!(format_ago(3 * 3_600_000 + 5), "3 h ago");
    assert_eq!(format_ago(5 * 86_400_000), "5 days ago");
    assert_eq!(format_tenths(Duration::from_millis(2400)), "2.4 s");
    assert_eq!(format_tenths(Duration::from_millis(2401)), "2.5 s");
    assert_eq!(format_tenths(Duration::from_millis(1)), "0.1 s");
}

#[test]
fn kick_and_ban_commands_go_to_the_server_and_show_the_answer() {
    let mut app = online();
    press(&mut app, typed("/kick bob"));
    let sends = sent(&press(&mut app, [code(KeyCode::Enter)]));
    assert_eq!(sends[0].1, Command::Kick { name: "bob".into() });
    press(&mut app, [reply(sends[0].0, Reply::Ok)]);
    assert_eq!(
        app.chat.lines.back(),
        Some(&ChatLine::Info("kicked bob".into()))
    );

    press(&mut app, typed("/ban carol"));
    let sends = sent(&press(&mut app, [code(KeyCode::Enter)]));
    assert_eq!(
        sends[0].1,
        Command::Ban {
            name: "carol".into()
        }
    );
    // Not an admin: the server's refusal is a brief status error.
    let start = t0();
    app.update(
        reply(
            sends[0].0,
            error(
                ErrorCode::Forbidden,
                "KICK and BAN need the admin password (AUTH)",
            ),
        ),
        start,
    );
    let notice = app.status.notice.clone().unwrap();
    assert_eq!(notice.kind, NoticeKind::Error);
    assert!(
        notice.text.starts_with("forbidden: KICK and BAN need"),
        "{}",
        notice.text
    );
    app.update(AppEvent::Tick, start + NOTICE_TIME);
    assert!(app.status.notice.is_none());

    press(&mut app, typed("/kick"));
    assert!(sent(&press(&mut app, [code(KeyCode::Enter)])).is_empty());
    assert_eq!(
        app.chat.lines.back(),
        Some(&ChatLine::Error("usage: /kick NAME".into()))
    );
}

#[test]
fn rollback_and_fill_commands_go_to_the_server_and_show_the_answer() {
    let mut app = online();
    press(&mut app, typed("/rollback griefer 30"));
    let sends = sent(&press(&mut app, [code(KeyCode::Enter)]));
    assert_eq!(
        sends[0].1,
        Command::Rollback {
            name: "griefer".into(),
            minutes: 30
        }
    );
    press(
        &mut app,
        [reply(
            sends[0].0,
            Reply::Bulk {
                placed: 41,
                seq: 1250,
                more: 0,
            },
        )],
    );
    assert_eq!(
        app.chat.lines.back(),
        Some(&ChatLine::Info(
            "/rollback griefer 30: 41 pixels placed, up to seq 1250".into()
        ))
    );
    press(&mut app, typed("/fill 0 0 9 9 red"));
    let sends = sent(&press(&mut app, [code(KeyCode::Enter)]));
    assert_eq!(
        sends[0].1,
        Command::Fill {
            x1: 0,
            y1: 0,
            x2: 9,
            y2: 9,
            color: 5
        }
    );
    press(&mut app, typed("/fill 0 0 red"));
    assert!(sent(&press(&mut app, [code(KeyCode::Enter)])).is_empty());
    assert!(
        matches!(app.chat.lines.back(), Some(ChatLine::Error(e)) if e.starts_with("usage: /fill X1 Y1 X2 Y2 COLOR")),
        "{:?}",
        app.chat.lines.back()
    );
}

#[test]
fn a_crowds_presence_updates_the_users_and_the_server_in_use_is_named() {
    let mut app = online();
    let lines = app.chat.lines.len();
    press(
        &mut app,
        [
            net(ClientEvent::Event(Event::Presence(
                crate::protocol::Presence {
                    online: 1200,
                    joined: 40,
                    left: 3,
                    joined_names: vec![Arc::from("carol")],
                    left_names: vec![Arc::from("bob")],
                },
            ))),
            net(ClientEvent::Server("10.0.0.2:7879".into())),
        ],
    );
    assert_eq!(app.users.names, ["alice", "carol"]);
    assert_eq!(app.users.online(), 1200);
    assert_eq!(app.users.churn, Some((40, 3)));
    // A crowd's churn stays out of the chat.
    assert_eq!(app.chat.lines.len(), lines);
    assert_eq!(app.session.server, "10.0.0.2:7879");
}
