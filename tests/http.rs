//! The operators' HTTP listener (`--http`): liveness, readiness and
//! metrics over real TCP, in process and from the real binary.

mod common;

use common::*;

#[tokio::test]
async fn healthz_answers_while_the_server_runs() {
    let (server, http) = start_with_http(pixchat::Config::default()).await;
    let reply = http_get(http, "/healthz").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, "ok\n");
    // The chat port is served as before, beside it.
    let mut c = TextClient::joined(server.addr, "al").await;
    assert_eq!(c.cmd("PING").await, "OK PONG");
    let missing = http_get(http, "/nothing-here").await;
    assert_eq!(missing.status, 404, "{missing:?}");
    server.stop().await;
    // Shutdown stops the HTTP listener too.
    assert!(
        tokio::net::TcpStream::connect(http).await.is_err(),
        "the HTTP listener still accepts after shutdown"
    );
}

#[tokio::test]
async fn the_binary_serves_http_on_the_flag_and_logs_its_address() {
    let spec = pixchat_harness::Pixchat::new(env!("CARGO_BIN_EXE_pixchat-server"))
        .http("127.0.0.1:0")
        .args(["--memory"])
        .on_drop(pixchat_harness::OnDrop::Kill);
    let server = tokio::task::spawn_blocking(move || spec.start())
        .await
        .unwrap()
        .expect("server starts");
    let http = server.http_addr().expect("the http listening line");
    assert_ne!(http, server.addr());
    let reply = http_get(http, "/healthz").await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

/// The value of the sample `name` (with its labels, as printed) in a
/// `/metrics` body; `None` if it is not there.
fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_move_with_a_placement() {
    let dir = tempfile::tempdir().unwrap();
    let config = pixchat::Config {
        storage: Some(pixchat::server::storage::StorageConfig::new(dir.path())),
        ..Default::default()
    };
    let (server, http) = start_with_http(config).await;
    let mut watcher = TextClient::joined(server.addr, "watcher").await;
    let bin = BinClient::connect(server.addr).await;
    let before = http_get(http, "/metrics").await;
    assert_eq!(before.status, 200, "{before:?}");
    let b = &before.body;
    assert_eq!(
        sample(b, r#"pixchat_connections{mode="text"}"#),
        Some(1.0),
        "{b}"
    );
    assert_eq!(
        sample(b, r#"pixchat_connections{mode="binary"}"#),
        Some(1.0),
        "{b}"
    );
    assert_eq!(sample(b, "pixchat_users"), Some(1.0), "{b}");
    assert_eq!(sample(b, "pixchat_placements_total"), Some(0.0), "{b}");
    assert_eq!(sample(b, "pixchat_journal_up"), Some(1.0), "{b}");
    assert!(
        b.contains("# TYPE pixchat_journal_fsync_seconds histogram"),
        "{b}"
    );
    let deliveries_before = sample(b, "pixchat_deliveries_total").unwrap();
    let bytes_before = sample(b, "pixchat_sent_bytes_total").unwrap();

    let mut painter = TextClient::joined(server.addr, "painter").await;
    assert_eq!(painter.cmd("SET 1 2 red").await, "OK 1");
    let pixel = watcher.line().await;
    assert!(
        pixel.starts_with("JOINED painter") || pixel.starts_with("PIXEL "),
        "{pixel}"
    );
    assert!(painter.cmd("SET 9999 0 red").await.starts_with("ERR "));
    // The watcher's events were written by a flush, which counts them.
    loop {
        if watcher.line().await.starts_with("PIXEL ") {
            break;
        }
    }

    let after = http_get(http, "/metrics").await;
    let a = &after.body;
    assert_eq!(sample(a, "pixchat_placements_total"), Some(1.0), "{a}");
    assert_eq!(sample(a, "pixchat_canvas_seq"), Some(1.0), "{a}");
    assert_eq!(sample(a, "pixchat_users"), Some(2.0), "{a}");
    assert_eq!(
        sample(a, r#"pixchat_commands_total{kind="set",result="ok"}"#),
        Some(1.0),
        "{a}"
    );
    assert_eq!(
        sample(a, r#"pixchat_commands_total{kind="set",result="error"}"#),
        Some(1.0),
        "{a}"
    );
    assert_eq!(
        sample(a, r#"pixchat_commands_total{kind="join",result="ok"}"#),
        Some(2.0),
        "{a}"
    );
    assert!(
        sample(a, "pixchat_deliveries_total").unwrap() > deliveries_before,
        "{a}"
    );
    assert!(
        sample(a, "pixchat_sent_bytes_total").unwrap() > bytes_before,
        "{a}"
    );
    let fsyncs = sample(a, "pixchat_journal_fsync_seconds_count").unwrap();
    assert!(fsyncs >= 1.0, "the placement was fsynced: {a}");
    drop(bin);
    server.stop().await;
}

#[tokio::test]
async fn readyz_fails_while_the_journal_cannot_write() {
    use pixchat::server::storage::{Faults, StorageConfig};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::none());
    let config = pixchat::Config {
        storage: Some(StorageConfig {
            faults: faults.clone(),
            ..StorageConfig::new(dir.path())
        }),
        ..Default::default()
    };
    let (server, http) = start_with_http(config).await;
    let ready = http_get(http, "/readyz").await;
    assert_eq!(ready.status, 200, "{ready:?}");
    let mut a = TextClient::joined(server.addr, "a").await;
    assert_eq!(a.cmd("SET 0 0 red").await, "OK 1");
    // Every fsync fails from now on: the journal goes down at the next.
    faults.fail_syncs(u32::MAX);
    a.send("SET 1 0 red").await;
    let every = std::time::Duration::from_millis(20);
    let down = readyz_until(http, false, every).await;
    assert_eq!(down.status, 503, "{down:?}");
    assert!(down.body.contains("journal"), "{down:?}");
    // Liveness is another question: the process still answers.
    assert_eq!(http_get(http, "/healthz").await.status, 200);
    let metrics = http_get(http, "/metrics").await;
    assert_eq!(sample(&metrics.body, "pixchat_journal_up"), Some(0.0));
    // The disk works again: ready again, by itself.
    faults.fail_syncs(0);
    let r = readyz_until(http, true, every).await;
    assert_eq!(r.status, 200, "never ready again: {r:?}");
    server.stop().await;
}

#[tokio::test]
async fn readyz_fails_while_redis_is_down() {
    if !RedisProcess::available() {
        return;
    }
    let redis_dir = tempfile::tempdir().unwrap();
    let mut redis = RedisProcess::start(redis_dir.path()).await;
    let config = pixchat::Config {
        cluster: Some(pixchat::server::cluster::ClusterConfig {
            url: redis.url(),
            prefix: "pixchat:".into(),
            stream_len: pixchat::DEFAULT_STREAM_LEN,
            lease: std::time::Duration::from_millis(pixchat::DEFAULT_LEASE_MS),
            wait_replicas: 0,
            archive: None,
        }),
        ..Default::default()
    };
    let (server, http) = start_with_http(config).await;
    let ready = http_get(http, "/readyz").await;
    assert_eq!(ready.status, 200, "{ready:?}");
    let m = http_get(http, "/metrics").await;
    assert_eq!(sample(&m.body, "pixchat_redis_up"), Some(1.0), "{m:?}");
    // Nothing happened yet: the stream is read to its end.
    assert_eq!(
        sample(&m.body, "pixchat_redis_stream_lag_seconds"),
        Some(0.0),
        "{m:?}"
    );
    redis.stop().await;
    let every = std::time::Duration::from_millis(50);
    let down = readyz_until(http, false, every).await;
    assert_eq!(down.status, 503, "{down:?}");
    assert!(down.body.contains("Redis"), "{down:?}");
    let m = http_get(http, "/metrics").await;
    assert_eq!(sample(&m.body, "pixchat_redis_up"), Some(0.0), "{m:?}");
    assert_eq!(
        sample(&m.body, "pixchat_redis_stream_lag_seconds"),
        Some(-1.0),
        "{m:?}"
    );
    redis.restart().await;
    let r = readyz_until(http, true, every).await;
    assert_eq!(r.status, 200, "never ready again: {r:?}");
    server.stop().await;
}

/// Asks `/readyz` every `every` until it says ready (200) or, with `ready`
/// false, anything else, for at most [`WAIT`]; returns its last answer.
async fn readyz_until(
    http: std::net::SocketAddr,
    ready: bool,
    every: std::time::Duration,
) -> HttpReply {
    let probe = async || http_get(http, "/readyz").await;
    poll_until(WAIT, every, probe, |r| (r.status == 200) == ready).await
}
