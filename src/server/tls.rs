//! TLS on the chat port (`--tls-cert`, `--tls-key`): a client whose first
//! byte is 0x16 (a TLS handshake record, which neither wire mode starts
//! with) gets a TLS session, and inside it chooses text or binary mode by
//! its first byte as on plain TCP. The TLS session is a bridge: its own
//! task decrypts into one end of a Unix socket pair that the server serves
//! like any connection (`connection::Entrance`), so every protocol rule,
//! limit and guarantee is the same code. `--tls-only` refuses plaintext
//! with `ERR tls_required`. The certificate is read again on SIGHUP; a bad
//! new one is logged and the old one kept.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{debug, info, warn};

use super::connection::{self, Entrance, NotAdmitted};
use super::connections::{Refused, Registered};
use crate::protocol::{ErrorCode, WireError};

/// The first byte of a TLS record carrying a handshake (a ClientHello).
pub const HANDSHAKE_RECORD: u8 = 0x16;
/// How long a client gets to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After the server closed a bridged session: how long the client's side
/// may still send (the server drains it, so the close is clean).
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// After the client closed: how long the server's last words may take.
const WRITE_GRACE: Duration = Duration::from_secs(5);

/// Where the certificate and key are, and whether plaintext is refused.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Refuse clients that do not start TLS (`ERR tls_required`).
    pub only: bool,
}

/// The server's TLS state: the configuration in force, replaced on reload.
#[derive(Debug)]
pub(crate) struct Tls {
    config: TlsConfig,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Reads the certificate and key; an error says which file and why.
    pub fn load(config: TlsConfig) -> anyhow::Result<Self> {
        let current = server_config(&config.cert, &config.key)?;
        Ok(Self {
            config,
            current: RwLock::new(current),
        })
    }

    /// Reads the files again; on failure the certificate in force stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let next = server_config(&self.config.cert, &self.config.key)?;
        *self.current.write().expect("tls lock poisoned") = next;
        Ok(())
    }

    /// Whether plaintext clients are refused.
    pub fn only(&self) -> bool {
        self.config.only
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().expect("tls lock poisoned").clone())
    }
}

/// A rustls server configuration (ring provider, TLS 1.2 and 1.3) from
/// PEM files.
fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("read the TLS certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parse the TLS certificate {}", cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "no certificate in {} (expected PEM)",
        cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("read the TLS private key {}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not go together")?;
    Ok(Arc::new(config))
}

/// Reloads the certificate on every SIGHUP until `shutdown`.
pub(crate) async fn reload_on_hangup(tls: Arc<Tls>, shutdown: tokio_util::sync::CancellationToken) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP; the TLS certificate will not be reloaded");
            return shutdown.cancelled().await;
        }
    };
    loop {
        tokio::select! {
            got = hup.recv() => if got.is_none() { return shutdown.cancelled().await },
            _ = shutdown.cancelled() => return,
        }
        match tls.reload() {
            Ok(()) => info!(cert = %tls.config.cert.display(), "TLS certificate reloaded"),
            Err(e) => warn!(
                error = format!("{e:#}"),
                "TLS certificate not reloaded; still serving the previous one"
            ),
        }
    }
}

/// Serves an accepted TCP connection on a port with TLS: a TLS client is
/// bridged, a plaintext one served as usual (or refused with `--tls-only`).
/// Holds the connection's place (`listed`) until it is served.
pub(crate) async fn front(
    stream: TcpStream,
    peer: SocketAddr,
    listed: Registered,
    tls: Arc<Tls>,
    entrance: Entrance,
) {
    let timeout = entrance.shared.limits.handshake_timeout;
    let Some(first) = super::sock::first_byte(&stream, timeout).await else {
        debug!(%peer, "closed: nothing sent within the handshake timeout");
        return;
    };
    if first != HANDSHAKE_RECORD {
        if tls.only() {
            drop(listed);
            let err = WireError::new(
                ErrorCode::TlsRequired,
                "this server takes TLS connections only",
            );
            super::reject_with(stream, err).await;
            return;
        }
        // Its own task, so a plaintext connection's future is what it is
        // without TLS.
        entrance.tracker.spawn(connection::serve(
            Arc::new(stream.into()),
            peer,
            entrance.shared.clone(),
            listed,
        ));
        return;
    }
    let _ = stream.set_nodelay(true);
    let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)).await;
    let secure = match accepted {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    // The place held for the TCP connection is handed over to the bridged
    // one, which the entrance admits under the same limits.
    drop(listed);
    let inner = match entrance.admit(peer) {
        Ok(inner) => inner,
        Err(why) => {
            let err = match why {
                NotAdmitted::Refused(Refused::Full) => super::server_full(),
                NotAdmitted::Refused(Refused::TooManyFromIp) => super::too_many_connections(),
                NotAdmitted::Io(e) => {
                    warn!(%peer, error = %e, "cannot bridge a TLS client");
                    super::server_full()
                }
            };
            refuse_inside(secure, &err).await;
            return;
        }
    };
    bridge(secure, inner).await;
}

/// Answers a TLS client that is refused (server full, too many from its
/// address) inside TLS, as a plaintext client is answered in plaintext:
/// the handshake first, then `ERR`, then the close. Bounded by the
/// handshake timeout.
pub(crate) async fn refuse(tls: &Tls, stream: TcpStream, err: &WireError) {
    let _ = stream.set_nodelay(true);
    if let Ok(Ok(secure)) =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)).await
    {
        refuse_inside(secure, err).await;
    }
}

/// Inside TLS the client has not chosen its mode yet: it is answered in
/// text, as a client that sent nothing is.
async fn refuse_inside(mut secure: tokio_rustls::server::TlsStream<TcpStream>, err: &WireError) {
    let line = format!("ERR {} {}\n", err.code, err.message);
    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        secure.write_all(line.as_bytes()).await?;
        secure.shutdown().await
    })
    .await;
}

/// Copies both ways until the server's side is done (then the client gets
/// `close_notify` and a moment to finish) or the client's side closes (then
/// the server gets a moment to send what it still has).
async fn bridge(secure: tokio_rustls::server::TlsStream<TcpStream>, mut inner: UnixStream) {
    use tokio::io::AsyncWriteExt as _;
    let (mut client_rd, mut client_wr) = tokio::io::split(secure);
    let (mut server_rd, mut server_wr) = inner.split();
    let up = async {
        let _ = tokio::io::copy(&mut client_rd, &mut server_wr).await;
        let _ = server_wr.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut server_rd, &mut client_wr).await;
        let _ = client_wr.shutdown().await;
    };
    tokio::pin!(up, down);
    tokio::select! {
        _ = &mut down => {
            let _ = tokio::time::timeout(CLOSE_GRACE, up).await;
        }
        _ = &mut up => {
            let _ = tokio::time::timeout(WRITE_GRACE, down).await;
        }
    }
}
