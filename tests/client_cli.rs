//! The scripting subcommands of the real `pixchat` binary against a real
//! server: exit codes, stdout in the text mode's lines, the server's error
//! on stderr.

mod common;

use std::net::SocketAddr;
use std::process::{Output, Stdio};

use common::{TextClient, WAIT, start_default, start_server};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn pixchat(addr: SocketAddr) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pixchat"));
    cmd.args(["--server", &addr.to_string()])
        // Only what a test passes counts, not the environment's.
        .env_remove("PIXCHAT_PASSWORD")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn run(addr: SocketAddr, args: &[&str]) -> Output {
    tokio::time::timeout(WAIT, pixchat(addr).args(args).output())
        .await
        .expect("pixchat finishes in time")
        .expect("run pixchat")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn set_places_one_pixel_and_prints_its_seq() {
    let server = start_default().await;
    let mut watcher = TextClient::joined(server.addr, "watcher").await;
    let out = run(server.addr, &["set", "3", "4", "red", "--name", "bot"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "1\n");
    assert_eq!(watcher.until("PIXEL").await, "PIXEL 1 3 4 5 bot");

    let out = run(server.addr, &["set", "0", "0", "15", "--name", "bot"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(watcher.until("PIXEL").await, "PIXEL 2 0 0 15 bot");
}

/// Every line the watcher got until the answer to a `PING` sent now:
/// whatever the server had queued for it before.
async fn drain(watcher: &mut TextClient) -> Vec<String> {
    watcher.send("PING drained").await;
    let mut lines = Vec::new();
    loop {
        let line = watcher.line().await;
        if line == "OK PONG drained" {
            return lines;
        }
        lines.push(line);
    }
}

#[tokio::test]
async fn set_and_say_join_quietly_so_nobody_sees_cron_come_and_go() {
    let server = start_default().await;
    let mut watcher = TextClient::joined(server.addr, "watcher").await;
    let out = run(server.addr, &["set", "1", "2", "red", "--name", "cron"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(server.addr, &["say", "backup done", "--name", "cron"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A failed call says nothing to anyone either.
    let out = run(server.addr, &["set", "99", "0", "red", "--name", "cron"]).await;
    assert!(!out.status.success());
    assert_eq!(
        drain(&mut watcher).await,
        ["PIXEL 1 1 2 5 cron", "MSG cron backup done"],
        "no JOINED or LEFT for cron"
    );
}

#[tokio::test]
async fn arguments_are_checked_before_connecting() {
    // Nobody listens on port 1: each of these must fail on its argument,
    // not on the connection.
    let nowhere: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &["set", "1", "1", "16", "--name", "bot"],
            "out_of_range: color must be 0-15",
        ),
        (
            &["set", "1", "1", "mauve", "--name", "bot"],
            "unknown colour",
        ),
        (
            &["set", "4096", "1", "red", "--name", "bot"],
            "out_of_range",
        ),
        (&["set", "1", "1", "red", "--name", "no space"], "bad_name"),
        (
            &["say", "", "--name", "bot"],
            "bad_args: the message is empty",
        ),
        (
            &["say", "hi", "--name", "a.name.far.too.long.for.it"],
            "bad_name",
        ),
    ];
    for (args, want) in cases {
        let out = run(nowhere, args).await;
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err:?} lacks {want:?}");
        assert!(!err.contains("cannot connect"), "{args:?}: {err:?}");
    }
}

#[tokio::test]
async fn failures_exit_non_zero_with_the_servers_error() {
    let server = start_default().await;
    let _holder = TextClient::joined(server.addr, "holder").await;
    let cases: [(&[&str], &str); 5] = [
        (
            &["set", "64", "0", "red", "--name", "bot"],
            "out_of_range: x must be 0-63 and y 0-63",
        ),
        (&["set", "1", "1", "16", "--name", "bot"], "out_of_range"),
        (
            &["set", "1", "1", "mauve", "--name", "bot"],
            "unknown colour",
        ),
        (&["say", "hi", "--name", "HOLDER"], "name_taken"),
        (&["say", "hi", "--name", "no space"], "bad_name"),
    ];
    for (args, want) in cases {
        let out = run(server.addr, args).await;
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = text(&out.stderr);
        assert!(
            err.contains(want),
            "{args:?}: stderr {err:?} lacks {want:?}"
        );
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed {:?}",
            text(&out.stdout)
        );
    }
    let out = run(server.addr, &["say", "hi"]).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--name"));

    // Nobody on port 1.
    let out = run("127.0.0.1:1".parse().unwrap(), &["canvas"]).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("cannot connect to 127.0.0.1:1"));
}

#[tokio::test]
async fn say_sends_one_chat_message() {
    let server = start_default().await;
    let mut watcher = TextClient::joined(server.addr, "watcher").await;
    let out = run(server.addr, &["say", "hello from cron", "--name", "cron"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(watcher.until("MSG").await, "MSG cron hello from cron");
}

#[tokio::test]
async fn canvas_prints_exactly_what_the_text_mode_prints() {
    let server = start_default().await;
    let mut painter = TextClient::joined(server.addr, "painter").await;
    assert_eq!(painter.cmd("SET 0 0 black").await, "OK 1");
    assert_eq!(painter.cmd("SET 63 63 15").await, "OK 2");
    let out = run(server.addr, &["canvas"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    let mut raw = TextClient::connect(server.addr).await;
    raw.send("CANVAS").await;
    let mut want = String::new();
    loop {
        let line = raw.line().await;
        want.push_str(&line);
        want.push('\n');
        if line.starts_with("OK") {
            break;
        }
    }
    assert_eq!(text(&out.stdout), want);
    assert!(want.starts_with("ROW 0 3000") && want.ends_with("f\nOK 2 64 64\n"));
    // CANVAS needs no JOIN, so the reader never showed up as a user.
    assert_eq!(painter.cmd("WHO").await, "OK 1 painter");
}

#[tokio::test]
async fn watch_prints_event_lines_until_interrupted() {
    let server = start_default().await;
    let mut painter = TextClient::joined(server.addr, "painter").await;
    let mut child = pixchat(server.addr)
        .args(["watch", "--name", "eyes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(painter.until("JOINED").await, "JOINED eyes");
    assert_eq!(painter.cmd("SET 2 3 green").await, "OK 1");
    assert_eq!(painter.cmd("SAY look").await, "OK");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("a line in time")
            .unwrap()
            .expect("watch still running");
        seen.push(line);
    }
    assert_eq!(seen, ["PIXEL 1 2 3 10 painter", "MSG painter look"]);

    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "Ctrl-C is the normal end: {status:?}");
    assert_eq!(painter.until("LEFT").await, "LEFT eyes");
}

#[tokio::test]
async fn watch_fails_when_the_server_goes_away() {
    let server = start_default().await;
    let mut child = pixchat(server.addr)
        .args(["watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut painter = TextClient::connect(server.addr).await;
    // Without --name it joins as watch-XXXX.
    let mut online = String::new();
    for _ in 0..200 {
        online = painter.cmd("WHO").await;
        if online.contains("watch-") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(online.starts_with("OK 1 watch-"), "{online}");
    server.stop().await;
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("a line in time")
        .unwrap();
    assert_eq!(
        line.as_deref(),
        Some("BYE shutting_down the server is shutting down")
    );
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("shutting_down"),
        "{}",
        text(&out.stderr)
    );
}

const PASSWORD: &str = "s3cret";

async fn start_locked() -> common::TestServer {
    start_server(pixchat::Config {
        password: Some(PASSWORD.into()),
        ..pixchat::Config::default()
    })
    .await
}

#[tokio::test]
async fn on_a_password_server_every_subcommand_needs_the_password() {
    let server = start_locked().await;
    let mut watcher = TextClient::connect(server.addr).await;
    assert_eq!(watcher.cmd(&format!("AUTH {PASSWORD}")).await, "OK");
    assert_eq!(watcher.cmd("JOIN watcher").await, "OK watcher 64 64 0");

    let out = run(
        server.addr,
        &[
            "set",
            "3",
            "4",
            "red",
            "--name",
            "bot",
            "--password",
            PASSWORD,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "1\n");
    assert_eq!(watcher.until("PIXEL").await, "PIXEL 1 3 4 5 bot");

    // Without it, or with a wrong one: refused, nothing printed or placed.
    let cases: [(&[&str], &str); 5] = [
        (&["set", "0", "0", "red", "--name", "bot"], "forbidden"),
        (&["say", "hi", "--name", "bot"], "forbidden"),
        (&["canvas"], "forbidden"),
        (&["whose", "3", "4"], "forbidden"),
        (
            &[
                "set",
                "0",
                "0",
                "red",
                "--name",
                "bot",
                "--password",
                "nope",
            ],
            "forbidden: wrong password",
        ),
    ];
    for (args, want) in cases {
        let out = run(server.addr, args).await;
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = text(&out.stderr);
        assert!(
            err.contains(want),
            "{args:?}: stderr {err:?} lacks {want:?}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {:?}", text(&out.stdout));
    }
    let out = run(server.addr, &["canvas"]).await;
    assert!(
        text(&out.stderr).contains("--password or PIXCHAT_PASSWORD"),
        "a missing password names the flag: {}",
        text(&out.stderr)
    );

    // The environment variable does as well as the flag.
    let out = tokio::time::timeout(
        WAIT,
        pixchat(server.addr)
            .args(["say", "from env", "--name", "envy"])
            .env("PIXCHAT_PASSWORD", PASSWORD)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(watcher.until("MSG").await, "MSG envy from env");

    let out = run(server.addr, &["canvas", "--password", PASSWORD]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).ends_with("OK 1 64 64\n"));

    // watch joins after AUTH too.
    let mut child = pixchat(server.addr)
        .args(["watch", "--name", "eyes", "--password", PASSWORD])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(watcher.until("JOINED").await, "JOINED eyes");
    assert_eq!(watcher.cmd("SAY psst").await, "OK");
    // The chat so far comes first (HISTORY lines), then the live message.
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.starts_with("MSG")) {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("a line in time")
            .unwrap()
            .expect("watch still running");
        seen.push(line);
    }
    assert!(
        seen[0].starts_with("HISTORY ") && seen[0].ends_with(" envy from env"),
        "{seen:?}"
    );
    assert_eq!(seen.last().unwrap(), "MSG watcher psst");
    child.start_kill().unwrap();
}

#[tokio::test]
async fn whose_prints_name_time_and_seq_or_nobody() {
    let server = start_default().await;
    let mut painter = TextClient::joined(server.addr, "painter").await;
    assert_eq!(painter.cmd("SET 5 6 blue").await, "OK 1");
    let want = painter.cmd("WHOSE 5 6").await;

    let out = run(server.addr, &["whose", "5", "6"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    // The text mode's answer without its OK.
    assert_eq!(format!("OK {printed}"), format!("{want}\n"));
    let fields: Vec<&str> = printed.split_whitespace().collect();
    assert_eq!((fields[0], fields[2]), ("painter", "1"));
    assert!(fields[1].parse::<u64>().unwrap() > 1_600_000_000_000);

    let out = run(server.addr, &["whose", "0", "0"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "nobody\n");

    let out = run(server.addr, &["whose", "64", "0"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("out_of_range"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn help_names_the_password_variable_but_never_its_value() {
    let out = tokio::time::timeout(
        WAIT,
        Command::new(env!("CARGO_BIN_EXE_pixchat"))
            .arg("--help")
            .env("PIXCHAT_PASSWORD", "hunter2-secret")
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(help.contains("--password"), "{help}");
    assert!(help.contains("PIXCHAT_PASSWORD"), "{help}");
    assert!(!help.contains("hunter2-secret"), "{help}");
    assert!(help.contains("whose"), "{help}");
}
