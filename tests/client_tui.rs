//! The real `pixchat` terminal UI in a real pseudo-terminal (tmux) against
//! the real `pixchat-server` binary: keys go in with `send-keys`, the screen
//! (text and colours) comes back with `capture-pane`, and plain text-mode
//! clients check what reached the server.
//!
//! Runs headless: tmux needs no terminal for a detached session. Every wait
//! polls with a bound. Each test's tmux server has its socket in a
//! temporary directory of its own (`tmux -S`), and a guard kills the server
//! and removes the directory even when a test fails, so nothing is left in
//! `/tmp`. Without tmux the tests are skipped, loudly (and fail under
//! `CI=true`, where `.ci/run` installs it).

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::{TextClient, WAIT};

/// How often the screen is read while waiting.
const POLL: Duration = Duration::from_millis(50);

type Server = common::ServerProcess;

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// True when tmux is installed; otherwise `test` is reported skipped
/// (which fails under `CI=true`).
fn have_tmux(test: &str) -> bool {
    let found = std::process::Command::new("tmux")
        .arg("-V")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        common::skip(test, "tmux is not installed (.ci/run installs it)");
    }
    found
}

/// A private tmux server with one 120x40 session running `pixchat`; dropped,
/// it kills the tmux server and everything in it, and removes the
/// directory that holds its socket and the client's log.
struct Tmux {
    dir: tempfile::TempDir,
}

impl Tmux {
    /// Runs `pixchat --server ADDR ARGS...` in a new session. A shell around
    /// it reports the exit status and keeps the pane, so the test can see
    /// the terminal after the UI is gone.
    fn start(addr: SocketAddr, args: &[&str]) -> Self {
        Self::start_sized(addr, args, (120, 40))
    }

    /// The same in a terminal of `size` columns and rows.
    fn start_sized(addr: SocketAddr, args: &[&str], size: (u16, u16)) -> Self {
        Self::start_on(&addr.to_string(), args, size)
    }

    /// Like [`Tmux::start`] with a `--server` list (`a:1,b:2`).
    fn start_with(servers: &str, args: &[&str]) -> Self {
        Self::start_on(servers, args, (120, 40))
    }

    /// `pixchat --server SERVERS ARGS...` in a terminal of `size`.
    fn start_on(servers: &str, args: &[&str], size: (u16, u16)) -> Self {
        // Built first, so its drop cleans up even if the session fails.
        let tmux = Tmux {
            dir: tempfile::Builder::new()
                .prefix("pixchat-tmux-")
                .tempdir()
                .expect("a temporary directory"),
        };
        let mut line = format!(
            "{} --server {servers} --log {}",
            env!("CARGO_BIN_EXE_pixchat"),
            tmux.log().display()
        );
        for arg in args {
            line.push(' ');
            line.push_str(arg);
        }
        let script = format!("{line}; echo \"EXITED $?\"; sleep 600");
        let status = tmux
            .command()
            .args(["new-session", "-d", "-s", "ui"])
            .args(["-x", &size.0.to_string(), "-y", &size.1.to_string()])
            .args(["env", "COLORTERM=truecolor", "sh", "-c", &script])
            .status()
            .expect("run tmux");
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    /// The tmux server's socket.
    fn socket(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    /// The client's log (`--log`).
    fn log(&self) -> PathBuf {
        self.dir.path().join("client.log")
    }

    fn command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new("tmux");
        cmd.args(["-f", "/dev/null", "-S"])
            .arg(self.socket())
            .env("TERM", "xterm-256color")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Presses keys, by tmux key name (`Space`, `Enter`, `Escape`, `l`).
    fn keys(&self, keys: &[&str]) {
        let out = self
            .command()
            .args(["send-keys", "-t", "ui"])
            .args(keys)
            .output()
            .unwrap();
        assert!(out.status.success(), "send-keys {keys:?}");
    }

    /// Types text literally.
    fn type_text(&self, text: &str) {
        let out = self
            .command()
            .args(["send-keys", "-t", "ui", "-l", text])
            .output()
            .unwrap();
        assert!(out.status.success(), "send-keys -l {text:?}");
    }

    /// A mouse event as the terminal reports it (SGR, 1006): `button` 0
    /// left, 2 right, +32 while moving; at the 0-based cell `(x, y)`.
    fn mouse(&self, button: u8, x: u16, y: u16, press: bool) {
        let end = if press { 'M' } else { 'm' };
        self.type_text(&format!("\x1b[<{button};{};{}{end}", x + 1, y + 1));
    }

    /// The screen as text, or with colour escapes (`-e`).
    fn capture(&self, escapes: bool) -> String {
        let mut cmd = self.command();
        cmd.args(["capture-pane", "-p", "-t", "ui"]);
        if escapes {
            cmd.arg("-e");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls the screen until `ok` holds; fails after `limit` showing the
    /// last screen and the client's log.
    async fn wait_for(&self, what: &str, limit: Duration, ok: impl Fn(&Screen) -> bool) -> Screen {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let screen = Screen::parse(&self.capture(true));
            if ok(&screen) {
                return screen;
            }
            if tokio::time::Instant::now() >= deadline {
                let log = std::fs::read_to_string(self.log()).unwrap_or_default();
                panic!(
                    "no {what} within {limit:?}; the screen:\n{}\nthe client's log:\n{log}",
                    screen.text()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the screen shows `text`.
    async fn wait_text(&self, text: &str) -> Screen {
        self.wait_for(text, WAIT, |s| s.text().contains(text)).await
    }
}

impl Drop for Tmux {
    /// The directory (socket, log) goes with `dir` right after.
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").output();
    }
}

/// A colour as tmux reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Colour {
    Default,
    Rgb(u8, u8, u8),
    Indexed(u8),
}

/// A captured screen: each cell's character and colours, read from
/// `capture-pane -e` (SGR escapes, as tmux re-emits them per line).
struct Screen {
    rows: Vec<Vec<(char, Colour, Colour)>>,
}

impl Screen {
    fn parse(captured: &str) -> Self {
        let rows = captured
            .lines()
            .map(|line| {
                let (mut fg, mut bg) = (Colour::Default, Colour::Default);
                let mut cells = Vec::new();
                let mut chars = line.chars().peekable();
                while let Some(c) = chars.next() {
                    if c != '\x1b' {
                        cells.push((c, fg, bg));
                        continue;
                    }
                    if chars.next() != Some('[') {
                        continue;
                    }
                    let mut params = String::new();
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            if c == 'm' {
                                apply_sgr(&params, &mut fg, &mut bg);
                            }
                            break;
                        }
                        params.push(c);
                    }
                }
                cells
            })
            .collect();
        Screen { rows }
    }

    fn text(&self) -> String {
        self.rows
            .iter()
            .map(|r| r.iter().map(|c| c.0).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn cell(&self, x: usize, y: usize) -> Option<(char, Colour, Colour)> {
        self.rows.get(y)?.get(x).copied()
    }

    /// The colour of canvas pixel `(x, y)`, for a canvas block whose inner
    /// top-left cell is screen `(1, 1)` and not scrolled: the upper half of
    /// a cell is its foreground, the lower half its background.
    fn pixel(&self, x: usize, y: usize) -> Option<Colour> {
        let (c, fg, bg) = self.cell(1 + x, 1 + y / 2)?;
        (c == '▀').then_some(if y.is_multiple_of(2) { fg } else { bg })
    }
}

fn apply_sgr(params: &str, fg: &mut Colour, bg: &mut Colour) {
    let nums: Vec<u16> = params.split(';').map(|p| p.parse().unwrap_or(0)).collect();
    let mut i = 0;
    while i < nums.len() {
        let target = match nums[i] {
            0 => {
                (*fg, *bg) = (Colour::Default, Colour::Default);
                None
            }
            39 => {
                *fg = Colour::Default;
                None
            }
            49 => {
                *bg = Colour::Default;
                None
            }
            38 => Some(&mut *fg),
            48 => Some(&mut *bg),
            _ => None,
        };
        if let Some(target) = target {
            match nums.get(i + 1) {
                Some(2) if i + 4 < nums.len() => {
                    *target = Colour::Rgb(nums[i + 2] as u8, nums[i + 3] as u8, nums[i + 4] as u8);
                    i += 4;
                }
                Some(5) if i + 2 < nums.len() => {
                    *target = Colour::Indexed(nums[i + 2] as u8);
                    i += 2;
                }
                _ => {}
            }
        }
        i += 1;
    }
}

const RED: Colour = Colour::Rgb(0xE5, 0x00, 0x00);
const GREEN: Colour = Colour::Rgb(0x02, 0xBE, 0x01);
const BLUE: Colour = Colour::Rgb(0x00, 0x83, 0xC7);
const WHITE: Colour = Colour::Rgb(0xFF, 0xFF, 0xFF);

/// The status bar, the screen's last line.
fn status(screen: &Screen) -> String {
    screen.text().lines().last().unwrap_or_default().to_string()
}

#[tokio::test]
async fn keys_draw_a_pixel_others_see_and_chat_goes_both_ways() {
    if !have_tmux("keys_draw_a_pixel_others_see_and_chat_goes_both_ways") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let mut watcher = TextClient::joined(server.addr, "watcher").await;
    let ui = Tmux::start(server.addr, &["--name", "alice"]);
    assert_eq!(watcher.until("JOINED").await, "JOINED alice");
    ui.wait_for("the connected status", WAIT, |s| {
        status(s).contains("● connected")
    })
    .await;

    // Cursor to (3,4), red, place.
    ui.keys(&["l", "l", "l", "j", "j", "j", "j", "5", "Space"]);
    assert_eq!(watcher.until("PIXEL").await, "PIXEL 1 3 4 5 alice");
    // Off the pixel, it shows red in the upper half of cell (3,2).
    ui.keys(&["l"]);
    ui.wait_for("red at (3,4)", WAIT, |s| s.pixel(3, 4) == Some(RED))
        .await;

    // Someone else's pixel appears too.
    assert_eq!(watcher.cmd("SET 6 7 blue").await, "OK 2");
    ui.wait_for("blue at (6,7)", WAIT, |s| s.pixel(6, 7) == Some(BLUE))
        .await;

    // Chat: Enter focuses the input, Enter sends.
    ui.keys(&["Enter"]);
    ui.type_text("hello from tmux");
    ui.keys(&["Enter"]);
    assert_eq!(watcher.until("MSG").await, "MSG alice hello from tmux");
    ui.wait_text("alice: hello from tmux").await;
    assert_eq!(watcher.cmd("SAY hi alice").await, "OK");
    ui.wait_text("watcher: hi alice").await;
    assert_eq!(watcher.cmd("TELL alice psst").await, "OK");
    ui.wait_text("[dm] watcher: psst").await;
    ui.type_text("/tell watcher back at you");
    ui.keys(&["Enter"]);
    assert_eq!(watcher.until("DM").await, "DM alice back at you");

    // Esc back to drawing (separately: ESC then q at once reads as Alt-q,
    // as in any terminal), then q quits and gives the terminal back.
    ui.keys(&["Escape"]);
    ui.wait_text("> Enter to chat").await;
    ui.keys(&["q"]);
    let screen = ui.wait_text("EXITED 0").await;
    assert!(
        !screen.text().contains("● connected"),
        "the alternate screen is gone:\n{}",
        screen.text()
    );
    assert_eq!(watcher.until("LEFT").await, "LEFT alice");
}

#[tokio::test]
async fn the_first_screen_asks_for_a_name_and_says_when_it_is_taken() {
    if !have_tmux("the_first_screen_asks_for_a_name_and_says_when_it_is_taken") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let mut holder = TextClient::joined(server.addr, "bob").await;
    let ui = Tmux::start(server.addr, &[]);
    ui.wait_text("Pick a name").await;
    ui.type_text("BOB");
    ui.keys(&["Enter"]);
    ui.wait_text("BOB is already online").await;
    ui.keys(&["BSpace", "BSpace", "BSpace"]);
    ui.type_text("carol");
    ui.keys(&["Enter"]);
    assert_eq!(holder.until("JOINED").await, "JOINED carol");
    ui.wait_for("the main screen", WAIT, |s| {
        status(s).contains("● connected") && status(s).contains("carol")
    })
    .await;
    ui.keys(&["C-c"]);
    ui.wait_text("EXITED 0").await;
}

#[tokio::test]
async fn after_a_server_restart_the_client_reconnects_and_shows_what_was_drawn_meanwhile() {
    if !have_tmux("after_a_server_restart_the_client_reconnects_and_shows_what_was_drawn_meanwhile")
    {
        return;
    }
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (dir1, dir2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = Server::start_on(&listen, dir1.path(), &[]).await;
    let mut painter = TextClient::joined(first.addr, "painter").await;
    assert_eq!(painter.cmd("SET 1 1 red").await, "OK 1");
    let ui = Tmux::start(first.addr, &["--name", "alice"]);
    ui.wait_for("the first canvas", WAIT, |s| {
        status(s).contains("● connected") && s.pixel(1, 1) == Some(RED)
    })
    .await;

    first.kill9().await;
    let screen = ui
        .wait_for("the reconnect countdown", WAIT, |s| {
            status(s).contains("reconnecting in")
        })
        .await;
    // The last canvas stays on screen while offline.
    assert_eq!(screen.pixel(1, 1), Some(RED));

    // A new server on the same port, with a new (empty) canvas: another
    // data directory.
    let second = Server::start_on(&listen, dir2.path(), &[]).await;
    let mut painter = TextClient::joined(second.addr, "painter").await;
    assert_eq!(painter.cmd("SET 2 3 red").await, "OK 1");
    assert_eq!(painter.cmd("SET 5 6 green").await, "OK 2");

    let screen = ui
        .wait_for("the new canvas", WAIT * 3, |s| {
            status(s).contains("● connected")
                && s.pixel(2, 3) == Some(RED)
                && s.pixel(5, 6) == Some(GREEN)
        })
        .await;
    // Never a mix of canvases: the old server's pixel is gone.
    assert_eq!(screen.pixel(1, 1), Some(WHITE));
    assert!(
        screen.text().contains("the server has a new canvas"),
        "{}",
        screen.text()
    );
    // Still usable: a pixel placed now reaches the new server.
    ui.keys(&["a", "Space"]);
    assert_eq!(painter.until("PIXEL 3").await, "PIXEL 3 0 0 10 alice");
    ui.keys(&["q"]);
    ui.wait_text("EXITED 0").await;
    drop(second);
}

#[tokio::test]
async fn after_a_crash_and_restart_on_the_same_data_the_client_resumes_where_it_was() {
    if !have_tmux("after_a_crash_and_restart_on_the_same_data_the_client_resumes_where_it_was") {
        return;
    }
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start_on(&listen, dir.path(), &[]).await;
    let mut painter = TextClient::joined(first.addr, "painter").await;
    assert_eq!(painter.cmd("SET 1 1 red").await, "OK 1");
    let ui = Tmux::start(first.addr, &["--name", "alice"]);
    ui.wait_for("the first canvas", WAIT, |s| {
        status(s).contains("● connected") && s.pixel(1, 1) == Some(RED)
    })
    .await;
    first.kill9().await;
    ui.wait_for("the reconnect countdown", WAIT, |s| {
        status(s).contains("reconnecting in")
    })
    .await;

    // The same canvas comes back from disk; pixels drawn while the client
    // is away must show up, next to what it already had.
    let second = Server::start_on(&listen, dir.path(), &[]).await;
    let mut painter = TextClient::joined(second.addr, "painter").await;
    assert_eq!(painter.cmd("SET 2 3 green").await, "OK 2");
    let screen = ui
        .wait_for("the resumed canvas", WAIT * 3, |s| {
            status(s).contains("● connected") && s.pixel(2, 3) == Some(GREEN)
        })
        .await;
    assert_eq!(
        screen.pixel(1, 1),
        Some(RED),
        "the pixel from before the crash stays"
    );
    assert!(
        !screen.text().contains("the server has a new canvas"),
        "{}",
        screen.text()
    );
    ui.keys(&["q"]);
    ui.wait_text("EXITED 0").await;
    drop(second);
}

#[tokio::test]
async fn on_a_password_server_the_first_screen_asks_for_the_password() {
    if !have_tmux("on_a_password_server_the_first_screen_asks_for_the_password") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--password", "s3cret"]).await;
    let mut watcher = TextClient::connect(server.addr).await;
    assert_eq!(watcher.cmd("AUTH s3cret").await, "OK");
    assert_eq!(watcher.cmd("JOIN watcher").await, "OK watcher 64 64 0");

    let ui = Tmux::start(server.addr, &["--name", "alice"]);
    let screen = ui.wait_text("this server needs a password").await;
    let text = screen.text();
    assert!(text.contains("name      alice"), "{text}");
    assert!(text.contains("password  "), "{text}");

    // A wrong one first: said so, and still the same screen.
    ui.type_text("guess");
    ui.keys(&["Enter"]);
    ui.wait_text("wrong password").await;
    ui.type_text("s3cret");
    let screen = ui.wait_text("password  ••••••").await;
    assert!(
        !screen.text().contains("s3cret"),
        "the password shows in plain text:\n{}",
        screen.text()
    );
    ui.keys(&["Enter"]);
    assert_eq!(watcher.until("JOINED").await, "JOINED alice");
    ui.wait_for("the main screen", WAIT, |s| {
        status(s).contains("● connected") && status(s).contains("alice")
    })
    .await;

    // Cursor to (2,1), red, place: the text client sees it.
    ui.keys(&["l", "l", "j", "5", "Space"]);
    assert_eq!(watcher.until("PIXEL").await, "PIXEL 1 2 1 5 alice");
    // And w says who placed it.
    ui.keys(&["w"]);
    ui.wait_text("(2,1) placed by alice").await;
    ui.keys(&["q"]);
    ui.wait_text("EXITED 0").await;
}

#[test]
fn the_screen_parser_reads_tmux_colours() {
    let s = Screen::parse("\x1b[38;2;1;2;3m\x1b[48;5;9mab\x1b[0mc\n\x1b[1;38;5;200mZ");
    assert_eq!(
        s.cell(0, 0),
        Some(('a', Colour::Rgb(1, 2, 3), Colour::Indexed(9)))
    );
    assert_eq!(
        s.cell(1, 0),
        Some(('b', Colour::Rgb(1, 2, 3), Colour::Indexed(9)))
    );
    assert_eq!(s.cell(2, 0), Some(('c', Colour::Default, Colour::Default)));
    assert_eq!(
        s.cell(0, 1),
        Some(('Z', Colour::Indexed(200), Colour::Default))
    );
}

/// The messages area of the chat: the rows between the chat's top border
/// and the rule above its input, right of the canvas.
fn chat_rows(screen: &Screen) -> Vec<String> {
    let text = screen.text();
    let lines: Vec<&str> = text.lines().collect();
    let top = lines.iter().position(|l| l.contains("╭ chat")).unwrap();
    let rule = lines.iter().position(|l| l.contains("├─")).unwrap();
    let x = lines[top].chars().position(|c| c == '╭').unwrap_or(0);
    lines[top + 1..rule]
        .iter()
        .map(|l| l.chars().skip(x).collect())
        .collect()
}

/// Places `pixels` through a text client, a batch at a time (the server
/// reads at most 64 unanswered commands).
async fn paint(
    painter: &mut TextClient,
    pixels: impl IntoIterator<Item = (u32, u32, &'static str)>,
) {
    let pixels: Vec<_> = pixels.into_iter().collect();
    for batch in pixels.chunks(32) {
        let lines: String = batch
            .iter()
            .map(|(x, y, c)| format!("SET {x} {y} {c}\n"))
            .collect();
        painter.send_raw(lines.as_bytes()).await;
        for _ in batch {
            let reply = painter.reply().await;
            assert!(reply.starts_with("OK"), "{reply}");
        }
    }
}

/// The canvas cells' dots of `colour` (upper and lower halves of `▀`).
fn dots_of(screen: &Screen, colour: Colour) -> usize {
    screen
        .rows
        .iter()
        .flatten()
        .filter(|(c, ..)| *c == '▀')
        .map(|&(_, fg, bg)| usize::from(fg == colour) + usize::from(bg == colour))
        .sum()
}

#[tokio::test]
async fn on_a_1024_canvas_zooming_out_shows_the_whole_of_it_and_g_goes_to_1000_1000() {
    let test = "on_a_1024_canvas_zooming_out_shows_the_whole_of_it_and_g_goes_to_1000_1000";
    if !have_tmux(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--width", "1024", "--height", "1024"]).await;
    let mut painter = TextClient::joined(server.addr, "painter").await;
    // A red square of 64x64 in the far corner: at the widest zoom (1:16
    // in 120x40), four dots by four.
    paint(
        &mut painter,
        (896..960).flat_map(|x| (896..960).map(move |y| (x, y, "red"))),
    )
    .await;
    let ui = Tmux::start(server.addr, &["--name", "alice"]);
    let screen = ui
        .wait_for("the canvas at 1:1", WAIT, |s| {
            status(s).contains("● connected") && s.text().contains("1024x1024 · 1:1")
        })
        .await;
    // The overview shows all of the canvas, the square as a red dot in
    // its corner; `m` hides it, and the square is nowhere in view.
    assert!(screen.text().contains('━'), "{}", screen.text());
    assert!(dots_of(&screen, RED) > 0, "in the overview");
    ui.keys(&["m"]);
    let screen = ui
        .wait_for("no overview", WAIT, |s| !s.text().contains('━'))
        .await;
    assert_eq!(dots_of(&screen, RED), 0, "the square is far out of view");
    for _ in 0..6 {
        ui.keys(&["-"]);
    }
    let screen = ui
        .wait_for("the whole canvas", WAIT, |s| {
            s.text().contains("1024x1024 · 1:16")
        })
        .await;
    assert_eq!(dots_of(&screen, RED), 16, "{}", screen.text());

    // g, x y, Enter: the cursor goes there, and Space places there.
    ui.keys(&["+", "+", "+", "+"]);
    ui.keys(&["g"]);
    ui.wait_text("go to x y:").await;
    ui.type_text("1000 1000");
    ui.keys(&["Enter"]);
    ui.wait_text("(1000,1000)").await;
    ui.keys(&["5", "Space"]);
    assert_eq!(
        painter.until("PIXEL 4097").await,
        "PIXEL 4097 1000 1000 5 alice"
    );
    ui.keys(&["q"]);
    ui.wait_text("EXITED 0").await;
}

#[tokio::test]
async fn a_drag_paints_a_line_and_a_right_click_takes_the_colour() {
    if !have_tmux("a_drag_paints_a_line_and_a_right_click_takes_the_colour") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let mut watcher = TextClient::joined(server.addr, "watcher").await;
    assert_eq!(watcher.cmd("SET 30 10 green").await, "OK 1");
    assert_eq!(watcher.until("PIXEL").await, "PIXEL 1 30 10 10 watcher");
    let ui = Tmux::start(server.addr, &["--name", "alice"]);
    ui.wait_for("the green pixel", WAIT, |s| {
        status(s).contains("● connected") && s.pixel(30, 10) == Some(GREEN)
    })
    .await;
    // 64x64 in 120x40 is at 1:1 from cell (1,1): cell (5,3) is pixel
    // (4,4), its upper half. Press there, drag along the row, let go.
    ui.keys(&["5"]);
    ui.mouse(0, 5, 3, true);
    ui.mouse(32, 8, 3, true);
    ui.mouse(32, 12, 3, true);
    ui.mouse(0, 12, 3, false);
    let mut placed = Vec::new();
    while placed.len() < 8 {
        placed.push(watcher.until("PIXEL").await);
    }
    let want: Vec<String> = (4..12)
        .enumerate()
        .map(|(i, x)| format!("PIXEL {} {x} 4 5 alice", i + 2))
        .collect();
    assert_eq!(placed, want, "each pixel of the line once, in order");
    // The cursor is on the line's end, (11,4): red under it, the title
    // says; the rest shows red.
    let line = |s: &Screen| (4..11).map(|x| s.pixel(x, 4)).collect::<Vec<_>>();
    let screen = ui
        .wait_for("the title", WAIT, |s| s.text().contains("(11,4) red"))
        .await;
    assert_eq!(line(&screen), vec![Some(RED); 7]);

    // A right click on the green pixel selects green.
    ui.mouse(2, 31, 6, true);
    ui.wait_text("colour green from (30,10)").await;
    let screen = ui.wait_text("▸a").await;
    assert!(screen.text().contains("green  [ ]"), "{}", screen.text());
    // And the key does the same under the cursor: the cursor is on the
    // line's end, red.
    ui.keys(&["i"]);
    ui.wait_text("colour red from").await;
    ui.keys(&["q"]);
    ui.wait_text("EXITED 0").await;
}

#[tokio::test]
async fn a_template_counts_the_pixels_left_and_n_goes_to_the_next() {
    if !have_tmux("a_template_counts_the_pixels_left_and_n_goes_to_the_next") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let mut watcher = TextClient::joined(server.addr, "watcher").await;
    // Four pixels at (10,10)-(13,10): red, transparent, blue, red.
    let png = pixchat::client::image::encode_rgba(
        4,
        1,
        &[
            [229, 0, 0, 255],
            [0, 0, 0, 0],
            [0, 0x83, 0xC7, 255],
            [229, 0, 0, 255],
        ],
    );
    let path = dir.path().join("bar.png");
    std::fs::write(&path, png).unwrap();
    let ui = Tmux::start(
        server.addr,
        &[
            "--name",
            "alice",
            "--template",
            path.to_str().unwrap(),
            "--at",
            "10,10",
        ],
    );
    ui.wait_for("the count", WAIT, |s| {
        status(s).contains("● connected") && status(s).contains("template 3 left")
    })
    .await;
    // Someone else fixes one: the count follows.
    assert_eq!(watcher.cmd("SET 13 10 red").await, "OK 1");
    assert_eq!(watcher.until("PIXEL").await, "PIXEL 1 13 10 5 watcher");
    ui.wait_for("one fewer", WAIT, |s| status(s).contains("template 2 left"))
        .await;
    // n: to the first pixel left, its colour selected; Space places it.
    ui.keys(&["n"]);
    ui.wait_text("(10,10) white").await;
    ui.keys(&["Space"]);
    assert_eq!(watcher.until("PIXEL").await, "PIXEL 2 10 10 5 alice");
    ui.wait_for("one left", WAIT, |s| status(s).contains("template 1 left"))
        .await;
    ui.keys(&["n", "Space"]);
    assert_eq!(watcher.until("PIXEL").await, "PIXEL 3 12 10 12 alice");
    ui.wait_for("done", WAIT, |s| status(s).contains("template done"))
        .await;
    ui.keys(&["q"]);
    ui.wait_text("EXITED 0").await;
}

#[tokio::test]
async fn at_80_columns_a_long_notice_is_cut_and_the_connection_state_stays() {
    if !have_tmux("at_80_columns_a_long_notice_is_cut_and_the_connection_state_stays") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let ui = Tmux::start_sized(server.addr, &["--name", "alice"], (80, 24));
    ui.wait_for("connected", WAIT, |s| status(s).contains("● connected"))
        .await;
    ui.keys(&["Enter"]);
    ui.type_text("/tell someone_who_is_not_here_at_all hello there");
    ui.keys(&["Enter"]);
    let screen = ui
        .wait_for("the refusal", WAIT, |s| status(s).contains("no_such_user"))
        .await;
    let bar = status(&screen);
    assert!(bar.starts_with(" ● connected │ "), "{bar:?}");
    assert!(
        bar.trim_end().ends_with('…'),
        "cut, not overflowing: {bar:?}"
    );
    assert!(bar.chars().count() <= 80, "{bar:?}");
    ui.keys(&["Escape"]);
    ui.wait_text("> Enter to chat").await;
    ui.keys(&["q"]);
    ui.wait_text("EXITED 0").await;
}

#[tokio::test]
async fn the_chat_scrolled_back_stays_still_tab_completes_and_up_recalls() {
    if !have_tmux("the_chat_scrolled_back_stays_still_tab_completes_and_up_recalls") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let mut watcher = TextClient::joined(server.addr, "watcher").await;
    let ui = Tmux::start(server.addr, &["--name", "alice"]);
    assert_eq!(watcher.until("JOINED").await, "JOINED alice");
    for i in 0..40 {
        assert_eq!(watcher.cmd(&format!("SAY line {i}")).await, "OK");
    }
    ui.wait_text("watcher: line 39").await;
    ui.keys(&["PPage"]);
    let before = ui.wait_text("End follows").await;
    let reading = chat_rows(&before);
    for i in 0..3 {
        assert_eq!(watcher.cmd(&format!("SAY more {i}")).await, "OK");
    }
    assert_eq!(watcher.cmd("SAY alice, look").await, "OK");
    let after = ui.wait_text("4 new, 1 for you ↓").await;
    assert_eq!(chat_rows(&after), reading, "the rows being read stay put");
    ui.keys(&["End"]);
    ui.wait_text("watcher: alice, look").await;

    // Tab completes the name at the start of a line, as `name: `.
    ui.keys(&["Enter"]);
    ui.type_text("wat");
    ui.keys(&["Tab"]);
    ui.wait_text("> watcher: ").await;
    ui.type_text("hi");
    ui.keys(&["Enter"]);
    assert_eq!(watcher.until("MSG alice").await, "MSG alice watcher: hi");
    // Up brings the line back; Enter sends it again.
    ui.keys(&["Up"]);
    ui.wait_text("> watcher: hi").await;
    ui.keys(&["Enter"]);
    assert_eq!(watcher.until("MSG alice").await, "MSG alice watcher: hi");
    ui.keys(&["Escape"]);
    ui.wait_text("> Enter to chat").await;
    ui.keys(&["q"]);
    ui.wait_text("EXITED 0").await;
}

#[tokio::test]
async fn in_a_cluster_the_client_moves_to_another_server_when_its_own_dies() {
    if !have_tmux("in_a_cluster_the_client_moves_to_another_server_when_its_own_dies")
        || !common::RedisProcess::available()
    {
        return;
    }
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let redis = common::RedisProcess::start(dirs[0].path()).await;
    let url = redis.url();
    let args = ["--redis", url.as_str()];
    let a = Server::start(dirs[1].path(), &args).await;
    let b = Server::start(dirs[2].path(), &args).await;
    let mut painter = TextClient::joined(b.addr, "painter").await;
    assert_eq!(painter.cmd("SET 1 1 red").await, "OK 1");
    // The first server of the list is the one it joins.
    let ui = Tmux::start_with(&format!("{},{}", a.addr, b.addr), &["--name", "alice"]);
    ui.wait_for("the canvas on the first server", WAIT, |s| {
        status(s).contains("● connected") && s.pixel(1, 1) == Some(RED)
    })
    .await;
    assert_eq!(painter.until("JOINED").await, "JOINED alice");

    a.kill9().await;
    // Drawn on the other server while the client is away: it shows once the
    // client has joined there (after alice's name, held by the dead
    // server's lease, is free again) and resumed from its seq.
    assert_eq!(painter.cmd("SET 2 3 green").await, "OK 2");
    let second = b.addr.to_string();
    let screen = ui
        .wait_for("the canvas on the second server", WAIT * 3, |s| {
            status(s).contains("● connected")
                && status(s).contains(&second)
                && s.pixel(2, 3) == Some(GREEN)
        })
        .await;
    assert_eq!(screen.pixel(1, 1), Some(RED), "the same canvas, resumed");
    assert!(
        !screen.text().contains("the server has a new canvas"),
        "{}",
        screen.text()
    );
    // And it works there: a pixel placed now reaches the cluster.
    ui.keys(&["a", "Space"]);
    assert_eq!(painter.until("PIXEL 3").await, "PIXEL 3 0 0 10 alice");
    ui.keys(&["q"]);
    ui.wait_text("EXITED 0").await;
    drop(b);
}

#[tokio::test]
async fn a_crowd_is_shown_in_the_users_pane_from_presence_events() {
    if !have_tmux("a_crowd_is_shown_in_the_users_pane_from_presence_events") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let args = ["--presence-threshold", "2", "--presence-interval-ms", "100"];
    let server = Server::start(dir.path(), &args).await;
    let ui = Tmux::start(server.addr, &["--name", "alice"]);
    ui.wait_for("the connected status", WAIT, |s| {
        status(s).contains("● connected")
    })
    .await;
    // The second user makes a crowd of two: a PRESENCE, not a JOINED.
    let _bob = TextClient::joined(server.addr, "bob").await;
    let screen = ui.wait_text("online 2 +1 -0").await;
    assert!(screen.text().contains("bob"), "{}", screen.text());
    assert!(!screen.text().contains("bob joined"), "{}", screen.text());
    ui.keys(&["q"]);
    ui.wait_text("EXITED 0").await;
}
