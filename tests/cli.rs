//! The real `pixchat-server` binary: flags, the listening log line that
//! scripts read, and a clean shutdown on SIGTERM.

mod common;

use common::{ServerProcess, TextClient, WAIT, poll_until};
use tokio::process::Command;

#[tokio::test]
async fn serves_on_the_port_it_logs_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["--width", "32", "--height", "16"]).await;
    let addr = server.addr;
    assert_ne!(addr.port(), 0);
    let mut c = TextClient::joined(addr, "cli").await;
    assert_eq!(c.cmd("SET 31 15 3").await, "OK 1");
    let (_, rows) = c.canvas().await;
    assert_eq!((rows.len(), rows[0].len()), (16, 32));

    // SIGTERM: every client is told goodbye, then the process exits 0.
    let closing = tokio::spawn(async move { c.expect_closed().await });
    server.stop().await;
    let rest = closing.await.unwrap();
    assert_eq!(
        rest.last().map(String::as_str),
        Some("BYE shutting_down the server is shutting down")
    );
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
        "--redis",
        "--redis-prefix",
        "--redis-wait",
        "--lease-ms",
        "--presence-threshold",
        "--presence-interval-ms",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

/// What the README says `/proc` shows: on a kernel with custom time slices
/// (Linux 6.12 and later) the runtime's workers, which answer commands, ask
/// for the shortest slice, and the fan-out pacers they start keep the
/// default one.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_workers_ask_for_a_short_time_slice_and_the_pacers_keep_the_default() {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut version = release
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (version.next().unwrap_or(0), version.next().unwrap_or(0));
    if (major, minor) < (6, 12) {
        return common::skip(
            "time slices",
            &format!("kernel {} has no custom time slices", release.trim()),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]).await;
    let threads = || -> Vec<(String, u64)> {
        let tasks = format!("/proc/{}/task", server.pid());
        std::fs::read_dir(tasks)
            .unwrap()
            .filter_map(|task| {
                let task = task.ok()?.path();
                let name = std::fs::read_to_string(task.join("comm")).ok()?;
                let sched = std::fs::read_to_string(task.join("sched")).ok()?;
                let slice = sched
                    .lines()
                    .find(|l| l.starts_with("se.slice"))?
                    .rsplit(':')
                    .next()?
                    .trim()
                    .parse()
                    .ok()?;
                Some((name.trim().to_string(), slice))
            })
            .collect()
    };
    // What the threads show once started: a runtime thread just spawned
    // (the blocking pool grows on demand) has the default slice until its
    // start hook has run, so the look is repeated until it settles.
    let settled = |seen: &[(String, u64)]| {
        let slices = |prefix: &'static str| {
            seen.iter()
                .filter(move |(n, _)| n.starts_with(prefix))
                .map(|(_, s)| *s)
                .collect::<Vec<_>>()
        };
        let (workers, pacers) = (slices("tokio-rt-worker"), slices("pixchat-pacer"));
        !workers.is_empty()
            && workers.iter().all(|s| *s == 100_000)
            && !pacers.is_empty()
            && pacers.iter().all(|s| *s > 100_000)
    };
    let every = std::time::Duration::from_millis(50);
    let seen = poll_until(WAIT, every, async || threads(), |s: &Vec<_>| settled(s)).await;
    assert!(
        settled(&seen),
        "the workers should have the short slice and the pacers the default: {seen:?}"
    );
    server.stop().await;
}
