//! The operators' HTTP listener (`--http ADDR`, off by default): liveness
//! on `/healthz`, and the routes of the browser view (`super::web`). It is
//! a supervised task of the server and stops with it.

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
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
    #[allow(dead_code, reason = "for readiness, metrics and the browser view")]
    pub hub: Arc<Hub>,
    /// Admits a bridged client under the server's limits.
    pub entrance: Entrance,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// The page's settings (`--http-play`, `--http-origin`).
    pub web: super::web::WebConfig,
}

/// The operators' routes merged with the browser view's.
pub(crate) fn router(state: HttpState) -> Router {
    let web = super::web::routes(&state);
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(state)
        .merge(web)
}

/// Alive: the process answers. (Whether it should get traffic is
/// `/readyz`'s question.)
async fn healthz() -> (StatusCode, &'static str) {
    (StatusCode::OK, "ok\n")
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
