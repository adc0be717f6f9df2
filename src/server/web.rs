//! The browser view (issue #15), served from the operators' HTTP listener:
//! its routes are merged into [`super::http::router`].

use super::http::HttpState;

/// The browser view's routes.
pub(crate) fn routes(state: &HttpState) -> axum::Router {
    let _ = state;
    axum::Router::new()
}
