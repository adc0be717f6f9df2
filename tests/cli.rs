//! The real `pixchat-server` binary: flags, the listening log line that
//! scripts read, and a clean shutdown on SIGTERM.

mod common;

use std::process::Stdio;

use common::TextClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts the binary on a free port with its data in `dir` and returns it
/// with its address, read from the `listening addr=...` log line.
async fn spawn_server(dir: &std::path::Path, args: &[&str]) -> (Child, std::net::SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pixchat-server"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start pixchat-server");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(common::WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("listening addr=").nth(1) {
                return rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        }
        panic!("the server exited without a listening line");
    })
    .await
    .expect("listening line in time");
    // Keep draining the log so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

#[tokio::test]
async fn serves_on_the_port_it_logs_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_server(dir.path(), &["--width", "32", "--height", "16"]).await;
    assert_ne!(addr.port(), 0);
    let mut c = TextClient::joined(addr, "cli").await;
    assert_eq!(c.cmd("SET 31 15 3").await, "OK 1");
    let (_, rows) = c.canvas().await;
    assert_eq!((rows.len(), rows[0].len()), (16, 32));

    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let rest = c.expect_closed().await;
    assert_eq!(
        rest.last().map(String::as_str),
        Some("BYE shutting_down the server is shutting down")
    );
    let status = tokio::time::timeout(common::WAIT, child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn bad_flags_fail_with_a_clear_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_pixchat-server"))
        .args(["--listen", "127.0.0.1:0", "--memory", "--width", "0"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("canvas sides are 1 to 4096 pixels"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_pixchat-server"))
        .args(["--listen", "not-an-address", "--memory"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bind not-an-address"));
}

#[tokio::test]
async fn help_lists_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_pixchat-server"))
        .arg("--help")
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--width",
        "--height",
        "--max-clients",
        "--history",
        "--data-dir",
        "--memory",
        "--fsync",
        "--new-canvas",
        "--cooldown-ms",
        "--rate-limit",
        "--rate-burst",
        "--max-conns-per-ip",
        "--idle-timeout",
        "--password",
        "--admin-password",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}
