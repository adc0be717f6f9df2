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
