//! The live page on the `--http` listener: `GET /` (the page, embedded),
//! `GET /ws` (a WebSocket bridge carrying the binary protocol unchanged)
//! and `GET /canvas.png` (the canvas as an indexed PNG).
//!
//! The bridge and the PNG go through the [`Entrance`]: each is served by
//! the normal connection code over a Unix socket pair, under the same
//! limits, bans, cooldowns and durability rules as a TCP client, and the
//! fan-out writes the same already-encoded frames to it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_util::codec::Framed;
use tracing::debug;

use super::connection::{Entrance, NotAdmitted};
use crate::protocol::binary::{ClientCodec, server_frame_len};
use crate::protocol::{Command, PALETTE, Reply, ServerMsg, Snapshot};

const INDEX_HTML: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");
const STYLE_CSS: &str = include_str!("web/style.css");

/// Largest side of a `/canvas.png` in pixels, scale included: bounds what
/// one request can make the server allocate (64 MiB at most).
pub const MAX_PNG_SIDE: u32 = 8192;
/// Largest `?scale=`.
pub const MAX_PNG_SCALE: u32 = 64;
/// A WebSocket message from the page is one client frame: the protocol's
/// 4096-byte payload limit plus its length prefix.
const MAX_WS_MESSAGE: usize = 4096 + 4;
/// How long `/canvas.png` waits for the server's answers.
const PNG_TIMEOUT: Duration = Duration::from_secs(10);

/// What the page's routes need.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// `--http-play`: the page may join with a name, place pixels and chat.
    /// Without it, bridged clients may only watch.
    pub play: bool,
    /// `--http-origin`: origins (`https://example.org`) allowed to open
    /// `/ws` besides the listener's own host; `*` allows any.
    pub origins: Vec<String>,
}

#[derive(Debug, Clone)]
struct Web {
    /// For `/ws`: read-only unless `--http-play`.
    ws: Entrance,
    /// For `/canvas.png`, which only reads.
    reads: Entrance,
    origins: Arc<[String]>,
    index: Arc<str>,
}

/// The page's routes, to be merged into the HTTP listener's router. The
/// router must be served with `into_make_service_with_connect_info`, so
/// bridged clients are counted and limited by their real address.
pub(crate) fn routes(state: &super::http::HttpState) -> Router {
    let (entrance, config) = (&state.entrance, &state.web);
    let reads = entrance.read_only();
    let ws = if config.play {
        entrance.clone()
    } else {
        reads.clone()
    };
    let web = Web {
        ws,
        reads,
        origins: config.origins.clone().into(),
        index: INDEX_HTML
            .replace(
                "data-play=\"0\"",
                if config.play {
                    "data-play=\"1\""
                } else {
                    "data-play=\"0\""
                },
            )
            .into(),
    };
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/style.css", get(style_css))
        .route("/ws", get(ws_upgrade))
        .route("/canvas.png", get(canvas_png))
        .with_state(web)
}

async fn index(State(web): State<Web>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        web.index.to_string(),
    )
        .into_response()
}

async fn app_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_JS,
    )
        .into_response()
}

async fn style_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        STYLE_CSS,
    )
        .into_response()
}

/// Over `--max-clients` or `--max-conns-per-ip`: 503 with the protocol's
/// error code, as a TCP client would read it.
fn refused(why: NotAdmitted) -> Response {
    use super::connections::Refused;
    let text = match why {
        NotAdmitted::Refused(Refused::Full) => "server_full: the server is full\n".to_string(),
        NotAdmitted::Refused(Refused::TooManyFromIp) => {
            "too_many_connections: too many connections from your address\n".to_string()
        }
        NotAdmitted::Io(e) => format!("unavailable: {e}\n"),
    };
    (StatusCode::SERVICE_UNAVAILABLE, text).into_response()
}

/// Whether a browser's `Origin` may open the WebSocket: no `Origin` (not
/// a browser), the listener's own host (as the request names it, so it
/// works behind a proxy that keeps `Host`), or one allowed by
/// `--http-origin`. Stops other sites' pages from using a visitor's
/// browser as a client (cross-site WebSocket hijacking).
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|host| host.eq_ignore_ascii_case(origin_host))
}

async fn ws_upgrade(
    State(web): State<Web>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&headers, &web.origins) {
        return (
            StatusCode::FORBIDDEN,
            "this origin may not open the WebSocket (see --http-origin)\n",
        )
            .into_response();
    }
    let unix = match web.ws.admit(peer) {
        Ok(u) => u,
        Err(why) => return refused(why),
    };
    upgrade
        .max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .on_upgrade(move |ws| bridge(ws, unix, peer))
}

/// Carries one page's session: each binary WebSocket message from the page
/// is written to the server's end as it is (one client frame, length
/// prefix included; the server sees binary mode from its first byte); what
/// the server writes is cut at frame boundaries into one binary message
/// per frame, each a slice of the read buffer rather than a copy. Either
/// side closing closes the other. Back-pressure is the socket's: a page
/// that reads slowly leaves the server's writes waiting, and the server
/// treats it as any slow TCP client.
async fn bridge(ws: WebSocket, unix: UnixStream, peer: SocketAddr) {
    let (mut ws_tx, mut ws_rx) = ws.split();
    let (mut rd, mut wr) = unix.into_split();
    let up = async move {
        let mut first = true;
        while let Some(Ok(msg)) = ws_rx.next().await {
            match msg {
                Message::Binary(bytes) => {
                    // Only binary mode: the way back is cut by its frames.
                    if first && bytes.first() != Some(&0) {
                        break;
                    }
                    first = false;
                    if wr.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Message::Text(_) | Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
        let _ = wr.shutdown().await;
    };
    let down = async move {
        let mut buf = BytesMut::with_capacity(8192);
        loop {
            // Whole frames go out as they are, all that one read brought
            // in one flush (one write, as the server's own batching made
            // them); a frame still arriving makes room for itself, so a
            // snapshot is read in one piece.
            let mut fed = false;
            loop {
                match server_frame_len(&buf) {
                    Ok(Some(len)) if buf.len() >= len => {
                        let frame = buf.split_to(len).freeze();
                        if ws_tx.feed(Message::Binary(frame)).await.is_err() {
                            return;
                        }
                        fed = true;
                    }
                    Ok(Some(len)) => {
                        buf.reserve(len - buf.len());
                        break;
                    }
                    Ok(None) => {
                        buf.reserve(4096);
                        break;
                    }
                    Err(_) => return,
                }
            }
            if fed && ws_tx.flush().await.is_err() {
                return;
            }
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = ws_tx.close().await;
    };
    // Either direction ending ends the session: a page that closed has
    // nothing more to say, and a server that closed sent its last word.
    tokio::select! {
        () = up => {}
        () = down => {}
    }
    debug!(%peer, "web session closed");
}

/// `?scale=N` of `/canvas.png`: 1 without it, `None` if it is not a number.
fn scale_of(query: Option<&str>) -> Option<u32> {
    let Some(query) = query else { return Some(1) };
    let mut scale = 1;
    for pair in query.split('&') {
        if let Some(v) = pair.strip_prefix("scale=") {
            scale = v.parse().ok()?;
        }
    }
    Some(scale)
}

async fn canvas_png(
    State(web): State<Web>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let scale = scale_of(query.as_deref()).unwrap_or(0);
    if !(1..=MAX_PNG_SCALE).contains(&scale) {
        return (
            StatusCode::BAD_REQUEST,
            format!("scale must be 1-{MAX_PNG_SCALE}\n"),
        )
            .into_response();
    }
    let unix = match web.reads.admit(peer) {
        Ok(u) => u,
        Err(why) => return refused(why),
    };
    let mut conn = Framed::new(unix, ClientCodec::default());
    let result = tokio::time::timeout(PNG_TIMEOUT, async {
        let hello = ask(&mut conn, Command::Hello { version: 1 }).await?;
        let Reply::Hello(info) = hello else {
            return Err(format!("unexpected answer to HELLO: {hello:?}"));
        };
        let side = u32::from(info.width.max(info.height)) * scale;
        if side > MAX_PNG_SIDE {
            return Ok(Err((
                StatusCode::BAD_REQUEST,
                format!("scale {scale} makes a side of {side} pixels; at most {MAX_PNG_SIDE}\n"),
            )));
        }
        let etag = format!("\"{:016x}-{}-{scale}\"", info.canvas_id, info.seq);
        if headers
            .get(header::IF_NONE_MATCH)
            .is_some_and(|v| v.as_bytes() == etag.as_bytes())
        {
            return Ok(Ok((etag, None)));
        }
        let canvas = ask(&mut conn, Command::Canvas).await?;
        let Reply::Canvas(snapshot) = canvas else {
            return Err(format!("unexpected answer to CANVAS: {canvas:?}"));
        };
        // The seq the picture shows, which may be newer than HELLO's.
        let etag = format!("\"{:016x}-{}-{scale}\"", snapshot.canvas_id, snapshot.seq);
        let png = encode_png(&snapshot, scale).map_err(|e| e.to_string())?;
        Ok(Ok((etag, Some(png))))
    })
    .await;
    let _ = conn.send(&Command::Quit).await;
    let (etag, png) = match result {
        Err(_) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the server did not answer\n",
            )
                .into_response();
        }
        Ok(Err(e)) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
        Ok(Ok(Err(bad))) => return bad.into_response(),
        Ok(Ok(Ok(done))) => done,
    };
    let etag = HeaderValue::from_str(&etag).expect("an etag is ASCII");
    // Revalidated on every use: the canvas changes at any time, and a
    // matching seq is answered without drawing anything.
    let cache = HeaderValue::from_static("no-cache");
    match png {
        None => (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache)],
        )
            .into_response(),
        Some(png) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("image/png")),
                (header::ETAG, etag),
                (header::CACHE_CONTROL, cache),
            ],
            png,
        )
            .into_response(),
    }
}

/// Sends one command and returns its reply, skipping events.
async fn ask(conn: &mut Framed<UnixStream, ClientCodec>, cmd: Command) -> Result<Reply, String> {
    conn.send(&cmd).await.map_err(|e| e.to_string())?;
    loop {
        match conn.next().await {
            None => return Err("the server closed the connection".into()),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(ServerMsg::Reply(Reply::Error(e)))) => return Err(e.to_string()),
            Some(Ok(ServerMsg::Reply(reply))) => return Ok(reply),
            Some(Ok(_)) => {}
        }
    }
}

/// The canvas as an indexed PNG (4 bits per pixel, the palette as `PLTE`),
/// each pixel a `scale` x `scale` square.
pub fn encode_png(snapshot: &Snapshot, scale: u32) -> Result<Vec<u8>, png::EncodingError> {
    let width = u32::from(snapshot.width) * scale;
    let height = u32::from(snapshot.height) * scale;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Indexed);
    encoder.set_depth(png::BitDepth::Four);
    encoder.set_palette(PALETTE.iter().flat_map(|c| c.rgb).collect::<Vec<u8>>());
    let mut writer = encoder.write_header()?;
    let row_bytes = (width as usize).div_ceil(2);
    let mut data = Vec::with_capacity(row_bytes * height as usize);
    let scale = scale as usize;
    for row in snapshot.pixels.chunks(usize::from(snapshot.width).max(1)) {
        let mut line = vec![0u8; row_bytes];
        for (i, &color) in row
            .iter()
            .flat_map(|c| std::iter::repeat_n(c, scale))
            .enumerate()
        {
            line[i / 2] |= if i.is_multiple_of(2) {
                color << 4
            } else {
                color & 0x0f
            };
        }
        for _ in 0..scale {
            data.extend_from_slice(&line);
        }
    }
    writer.write_image_data(&data)?;
    writer.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origin_is_checked_against_the_host() {
        let none: &[String] = &[];
        assert!(origin_allowed(
            &headers(&[("host", "a.example:8080")]),
            none
        ));
        assert!(origin_allowed(
            &headers(&[
                ("host", "a.example:8080"),
                ("origin", "http://a.example:8080")
            ]),
            none
        ));
        assert!(!origin_allowed(
            &headers(&[
                ("host", "a.example:8080"),
                ("origin", "http://evil.example")
            ]),
            none
        ));
        let allowed = ["https://b.example".to_string()];
        assert!(origin_allowed(
            &headers(&[("host", "a.example"), ("origin", "https://b.example")]),
            &allowed
        ));
        assert!(origin_allowed(
            &headers(&[("host", "a.example"), ("origin", "https://c.example")]),
            &["*".to_string()]
        ));
    }

    #[test]
    fn png_scales_square_pixels() {
        let snapshot = Snapshot {
            canvas_id: 1,
            seq: 2,
            width: 3,
            height: 1,
            pixels: vec![1, 15, 5],
        };
        let png = encode_png(&snapshot, 2).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (6, 2));
        assert_eq!(info.color_type, png::ColorType::Indexed);
        let row = &buf[..info.line_size];
        assert_eq!(row, &[0x11, 0xff, 0x55]);
        assert_eq!(&buf[info.line_size..2 * info.line_size], row);
    }
}
