//! The operators' HTTP listener (`--http ADDR`, off by default): liveness
//! on `/healthz`, readiness on `/readyz`, Prometheus metrics on `/metrics`,
//! and the routes of the browser view (`super::web`). It is a supervised
//! task of the server and stops with it.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::connection::Entrance;
use super::hub::Hub;

/// What the HTTP handlers may reach: the hub, the way in for bridged
/// clients (a WebSocket is served as any TCP client through it), and the
/// server's shutdown token.
#[derive(Debug, Clone)]
pub(crate) struct HttpState {
    /// The server's state: canvas, users, fan-out.
    pub hub: Arc<Hub>,
    /// Admits a bridged client under the server's limits.
    pub entrance: Entrance,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// The page's settings (`--http-play`, `--http-origin`).
    pub web: super::web::WebConfig,
    /// What `/metrics` encodes.
    pub registry: Arc<prometheus_client::registry::Registry>,
    /// In a cluster: the stream lag, asked of Redis at each scrape.
    pub stream_lag: Option<super::metrics::LagGauge>,
}

/// The operators' routes merged with the browser view's.
pub(crate) fn router(state: HttpState) -> Router {
    let web = super::web::routes(&state);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(web)
}

/// Alive: the process answers. (Whether it should get traffic is
/// `/readyz`'s question.)
async fn healthz() -> (StatusCode, &'static str) {
    (StatusCode::OK, "ok\n")
}

/// Ready for traffic: not shutting down, the journal can make changes
/// durable (it is not down on a full or failing disk), and, in a cluster,
/// Redis answers. 503 with the reasons otherwise.
async fn readyz(State(state): State<HttpState>) -> (StatusCode, String) {
    let mut not = Vec::new();
    if state.shutdown.is_cancelled() {
        not.push("shutting down");
    }
    if state.hub.journal_up() == Some(false) {
        not.push("the journal cannot write");
    }
    if state.hub.cluster().is_some_and(|c| !c.is_up()) {
        not.push("Redis is unreachable");
    }
    if not.is_empty() {
        (StatusCode::OK, "ready\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", not.join("; ")),
        )
    }
}

/// The Prometheus text exposition (OpenMetrics).
async fn metrics(State(state): State<HttpState>) -> Response {
    if let (Some(gauge), Some(cluster)) = (&state.stream_lag, state.hub.cluster()) {
        // Unknown while Redis does not answer: the gauge says -1 then.
        let lag = cluster.stream_lag().await;
        gauge.set(lag.map_or(-1.0, |d| d.as_secs_f64()));
    }
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Serves `router(state)` on `listener` until the server shuts down.
pub(crate) async fn serve(listener: TcpListener, state: HttpState) {
    let shutdown = state.shutdown.clone();
    let app = router(state);
    // The peer's address, for the limits of clients bridged through the
    // page's WebSocket.
    if let Err(e) = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
    {
        tracing::error!(error = %e, "the HTTP listener failed");
    }
}
