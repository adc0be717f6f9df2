//! Smoke tests of the real `pixchat-bench` binary: short, light runs against
//! real servers that check the counts and the JSON shape, never timings.

use std::time::Duration;

use tokio::process::Command;

/// Longest a smoke run may take before the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// The `pixchat-server` binary, built beside the bench by `cargo test`
/// at the workspace root.
fn server_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_pixchat-bench"))
            .with_file_name(format!("pixchat-server{}", std::env::consts::EXE_SUFFIX));
        assert!(
            bin.exists(),
            "{} is missing: run `cargo test` at the workspace root",
            bin.display()
        );
        bin.to_string_lossy().into_owned()
    })
}

/// A server in this process on a free loopback port, in memory.
struct InProcess {
    addr: std::net::SocketAddr,
    token: tokio_util::sync::CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl InProcess {
    async fn start(config: pixchat::Config) -> InProcess {
        let listener = pixchat::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = tokio_util::sync::CancellationToken::new();
        let handle = tokio::spawn(pixchat::run(listener, config, token.clone()));
        InProcess {
            addr,
            token,
            handle,
        }
    }

    async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }
}

/// Runs `pixchat-bench` with `args` and returns (success, stdout, stderr).
async fn bench(args: &[&str]) -> (bool, String, String) {
    let out = tokio::time::timeout(
        RUN_LIMIT,
        Command::new(env!("CARGO_BIN_EXE_pixchat-bench"))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("pixchat-bench finishes in time")
    .expect("run pixchat-bench");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(stdout: &str, stderr: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| {
        panic!("stdout is not one JSON object ({e}):\n{stdout}\nstderr:\n{stderr}")
    })
}

/// Checks one target's numbers: everything delivered, nothing lost.
fn assert_delivered(run: &serde_json::Value, what: &str) {
    for key in [
        "deliveries_per_s",
        "placements_per_s",
        "p50_us",
        "p99_us",
        "lost",
    ] {
        assert!(run[key].is_number(), "{what}: {key} missing in {run}");
    }
    assert_eq!(run["lost"], 0, "{what}: lost events in {run}");
    assert_eq!(
        run["out_of_order"], 0,
        "{what}: events out of order in {run}"
    );
    assert!(
        run["deliveries_per_s"].as_f64().unwrap() > 0.0,
        "{what}: nothing delivered in {run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_against_a_running_server_loses_nothing() {
    let server = InProcess::start(pixchat::Config {
        width: Some(1024),
        height: Some(1024),
        ..pixchat::Config::default()
    })
    .await;
    let addr = server.addr.to_string();
    let (ok, out, err) = bench(&[
        "fanout",
        "--addr",
        &addr,
        "--clients",
        "4",
        "--writers",
        "2",
        "--rate",
        "200",
        "--duration",
        "1",
        "--json",
        "--quiet",
    ])
    .await;
    assert!(ok, "pixchat-bench failed:\n{err}");
    let run = json(&out, &err);
    assert_delivered(&run, "pixchat");
    assert_eq!(run["target"], "pixchat");
    assert_eq!(run["watchers_incomplete"], 0, "{run}");
    // Each of the 4 watchers receives every accepted placement.
    assert_eq!(
        run["deliveries"].as_u64().unwrap(),
        4 * run["placements"].as_u64().unwrap(),
        "{run}"
    );
    server.stop().await;
}

#[tokio::test]
async fn fanout_starts_and_stops_its_own_server() {
    let (ok, out, err) = bench(&[
        "fanout",
        "--server-bin",
        server_bin(),
        "--server-arg=--history=1000",
        "--width",
        "256",
        "--height",
        "256",
        "--clients",
        "3",
        "--rate",
        "100",
        "--duration",
        "0.5",
        "--probe-joins",
        "--json",
    ])
    .await;
    assert!(ok, "pixchat-bench failed:\n{err}");
    let run = json(&out, &err);
    assert_delivered(&run, "pixchat");
    // Newcomers joined before and during the run, and were timed.
    for phase in ["join_idle_ms", "join_loaded_ms"] {
        let [p50, p99] = [0, 1].map(|i| run[phase][i].as_f64().unwrap_or(-1.0));
        assert!(p50 > 0.0 && p99 >= p50, "{phase}: {run}");
    }
    // The bench knew the server's pid, so it read its CPU and memory, and
    // its own.
    assert!(run["server_rss_kib"].as_u64().unwrap() > 0, "{run}");
    assert!(run["server_cpu_s"].is_number(), "{run}");
    assert!(run["server_cpu_ns_per_delivery"].is_number(), "{run}");
    assert!(run["bench_cpu_ns_per_delivery"].is_number(), "{run}");
}

#[tokio::test]
async fn durability_runs_the_durable_and_the_memory_server() {
    let (ok, out, err) = bench(&[
        "durability",
        "--server-bin",
        server_bin(),
        "--width",
        "256",
        "--height",
        "256",
        "--clients",
        "3",
        "--rate",
        "100",
        "--duration",
        "0.5",
        "--runs",
        "1",
        "--json",
        "--quiet",
    ])
    .await;
    assert!(ok, "pixchat-bench durability failed:\n{err}");
    let report = json(&out, &err);
    assert_delivered(&report["durable"], "durable");
    assert_delivered(&report["memory"], "memory");
    assert_eq!(report["durable"]["runs"], 1, "{report}");
    assert!(
        report["ratio_deliveries"].as_f64().unwrap() > 0.0,
        "{report}"
    );
}

#[tokio::test]
async fn stalled_clients_and_idle_watchers_report_memory_per_connection() {
    for mode in ["text", "binary"] {
        let (ok, out, err) = bench(&[
            "stalled",
            "--server-bin",
            server_bin(),
            "--server-arg=--memory",
            "--width",
            "256",
            "--height",
            "256",
            "--clients",
            "5",
            "--mode",
            mode,
            "--settle",
            "0.2",
            "--json",
            "--quiet",
        ])
        .await;
        assert!(ok, "pixchat-bench stalled failed:\n{err}");
        let run = json(&out, &err);
        assert_eq!(run["workload"], "stalled", "{run}");
        assert_eq!(run["clients"], 5, "{run}");
        assert_eq!(run["mode"], mode, "{run}");
        assert!(
            run["answer_bytes"].as_u64().unwrap() > 256 * 256 / 2,
            "{run}"
        );
        assert!(run["rss_per_connection_bytes"].is_number(), "{run}");
        assert!(
            run["probe_ms"].is_number(),
            "the server still answers: {run}"
        );
    }
    let (ok, out, err) = bench(&[
        "idle",
        "--server-bin",
        server_bin(),
        "--server-arg=--memory",
        "--width",
        "256",
        "--height",
        "256",
        "--clients",
        "5",
        "--rate",
        "50",
        "--duration",
        "0.5",
        "--json",
        "--quiet",
    ])
    .await;
    assert!(ok, "pixchat-bench idle failed:\n{err}");
    let run = json(&out, &err);
    assert_delivered(&run, "idle");
    assert_eq!(run["workload"], "idle", "{run}");
    assert!(run["rss_per_connection_bytes"].is_number(), "{run}");
}

/// Whether `redis-server` is on PATH; without it a test is skipped with a
/// loud note, except on CI (`CI=true`), where it fails.
fn redis_available(test: &str) -> bool {
    let redis = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("redis-server").is_file()))
        .unwrap_or(false);
    if !redis {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "redis-server is missing on CI (apt-get install redis-server)"
        );
        eprintln!("\n*** SKIPPED {test}: no redis-server on PATH ***\n");
    }
    redis
}

#[tokio::test]
async fn compare_reports_both_targets_and_the_ratio() {
    if !redis_available("compare_reports_both_targets_and_the_ratio") {
        return;
    }
    let (ok, out, err) = bench(&[
        "compare",
        "--server-bin",
        server_bin(),
        "--width",
        "256",
        "--height",
        "256",
        "--clients",
        "3",
        "--rate",
        "100",
        "--duration",
        "0.5",
        "--runs",
        "1",
        "--json",
        "--quiet",
    ])
    .await;
    assert!(ok, "pixchat-bench compare failed:\n{err}");
    let report = json(&out, &err);
    assert_delivered(&report["pixchat"], "pixchat");
    assert_delivered(&report["redis"], "redis");
    assert!(
        report["ratio_deliveries"].as_f64().unwrap() > 0.0,
        "{report}"
    );
}

#[tokio::test]
async fn fanout_over_two_clustered_servers_loses_nothing() {
    if !redis_available("fanout_over_two_clustered_servers_loses_nothing") {
        return;
    }
    let (ok, out, err) = bench(&[
        "fanout",
        "--servers",
        "2",
        "--server-bin",
        server_bin(),
        "--width",
        "256",
        "--height",
        "256",
        "--clients",
        "4",
        "--writers",
        "2",
        "--rate",
        "200",
        "--duration",
        "1",
        "--json",
        "--quiet",
    ])
    .await;
    assert!(ok, "pixchat-bench failed:\n{err}");
    let run = json(&out, &err);
    assert_delivered(&run, "two clustered servers");
    assert_eq!(run["servers"], 2, "{run}");
    assert_eq!(run["watchers_incomplete"], 0, "{run}");
    // Every watcher, on either server, got every placement, including
    // those placed through the other server.
    assert_eq!(
        run["deliveries"].as_u64().unwrap(),
        4 * run["placements"].as_u64().unwrap(),
        "{run}"
    );
    let each = run["per_server"].as_array().expect("per_server");
    assert_eq!(each.len(), 2, "{run}");
    for s in each {
        assert_eq!(
            (s["watchers"].as_u64(), s["writers"].as_u64()),
            (Some(2), Some(1)),
            "{run}"
        );
        assert!(s["cpu_s"].is_number(), "{run}");
    }
    assert!(run["redis_pid"].is_u64(), "{run}");
    assert!(run["redis_cpu_s"].is_number(), "{run}");
    assert!(run["total_server_cpu_cores"].is_number(), "{run}");
    // Everything the bench started is gone once it has exited (it reaps
    // its children, so their /proc entries are gone too).
    let pids = each
        .iter()
        .map(|s| s["pid"].as_u64().unwrap())
        .chain(run["redis_pid"].as_u64());
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} outlived the bench"
        );
    }
}

#[tokio::test]
async fn refuses_to_load_another_machine() {
    let (ok, _, err) = bench(&["fanout", "--addr", "10.1.2.3:7878", "--quiet"]).await;
    assert!(!ok);
    assert!(err.contains("not a loopback address"), "{err}");
}
