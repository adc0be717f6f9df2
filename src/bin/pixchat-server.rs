//! `pixchat-server`: parse flags, set up logging, serve until Ctrl-C or SIGTERM.

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Real-time chat and collaborative pixel canvas over TCP (text and binary
/// protocols on one port).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Address to listen on; port 0 picks a free port (the log shows it).
    #[arg(long, default_value = pixchat::DEFAULT_LISTEN)]
    listen: String,
    /// Canvas width in pixels (1-4096).
    #[arg(long, default_value_t = pixchat::DEFAULT_WIDTH)]
    width: u16,
    /// Canvas height in pixels (1-4096).
    #[arg(long, default_value_t = pixchat::DEFAULT_HEIGHT)]
    height: u16,
    /// Most connections served at once; more get `ERR server_full`.
    #[arg(long, default_value_t = pixchat::DEFAULT_MAX_CLIENTS)]
    max_clients: usize,
    /// Pixel events kept in memory for `SYNC` resume.
    #[arg(long, default_value_t = pixchat::DEFAULT_HISTORY)]
    history: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let config = pixchat::Config {
        width: cli.width,
        height: cli.height,
        max_clients: cli.max_clients,
        history: cli.history,
        ..pixchat::Config::default()
    };
    let listener = TcpListener::bind(&cli.listen)
        .await
        .with_context(|| format!("bind {}", cli.listen))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    pixchat::run(listener, config, shutdown).await
}

/// Cancels `token` on the first Ctrl-C or SIGTERM.
async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    token.cancel();
}
