//! `pixchat`: the terminal client, or with a subcommand one scripted action.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pixchat::client::{ClientError, Login, script, tui};
use pixchat::protocol::ErrorCode;
use tracing_subscriber::EnvFilter;

/// Draw and chat together on a pixchat server. Without a subcommand it
/// opens the terminal UI (press ? there for the keys).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Server address, HOST:PORT; or several servers of one cluster
    /// separated by commas (a:7878,b:7879): the first that serves is used,
    /// and the UI and `watch` move to the next when theirs goes away.
    #[arg(long, global = true, default_value = pixchat::DEFAULT_LISTEN)]
    server: String,
    /// Your user name; the UI asks for one when it is missing.
    #[arg(long, global = true)]
    name: Option<String>,
    /// The server's password (or its admin password, which also allows
    /// /kick and /ban); the UI asks for one when the server needs it.
    #[arg(long, global = true, env = "PIXCHAT_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Append logs to this file (the UI owns the screen, so it logs nowhere
    /// else; subcommands log errors to standard error).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Action>,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Place one pixel, print its seq, exit 0 on OK.
    Set {
        /// Column, from 0.
        x: u32,
        /// Row, from 0.
        y: u32,
        /// Palette index 0-15 or a colour name (red, blue, ...).
        color: String,
    },
    /// Send one chat message.
    Say {
        /// The message.
        text: String,
    },
    /// Print events as text-mode lines until Ctrl-C (joins as --name, or
    /// as watch-XXXX).
    Watch,
    /// Print the canvas as the text mode's CANVAS answer does.
    Canvas,
    /// Print who placed the pixel at X Y last: NAME UNIX_MS SEQ, or nobody.
    Whose {
        /// Column, from 0.
        x: u32,
        /// Row, from 0.
        y: u32,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole chain (`join as bob: name_taken: ...`),
            // what a script's log should show.
            eprintln!("pixchat: {e:#}{}", password_hint(&cli, &e));
            ExitCode::FAILURE
        }
    }
}

/// The server's words for a missing password name its protocol command;
/// a person at a shell wants the flag.
fn password_hint(cli: &Cli, e: &anyhow::Error) -> &'static str {
    let forbidden = e
        .chain()
        .filter_map(|cause| cause.downcast_ref::<ClientError>())
        .any(|c| c.wire().is_some_and(|w| w.code == ErrorCode::Forbidden));
    if forbidden && cli.password.as_deref().is_none_or(str::is_empty) {
        " (give the password with --password or PIXCHAT_PASSWORD)"
    } else {
        ""
    }
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    init_logging(cli)?;
    let server = cli.server.as_str();
    let password = cli.password.clone().filter(|p| !p.is_empty());
    let login = |what: &str| {
        cli.name
            .clone()
            .map(|name| Login::new(name).with_password(password.clone()))
            .with_context(|| format!("{what} needs --name NAME"))
    };
    match &cli.command {
        None => {
            tui::run(tui::Options {
                server: cli.server.clone(),
                name: cli.name.clone(),
                password,
            })
            .await
        }
        Some(Action::Set { x, y, color }) => {
            let seq = script::set(server, &login("set")?, *x, *y, color).await?;
            println!("{seq}");
            Ok(())
        }
        Some(Action::Say { text }) => script::say(server, &login("say")?, text).await,
        Some(Action::Watch) => {
            let login = Login::new(cli.name.clone().unwrap_or_else(script::watcher_name))
                .with_password(password.clone());
            let stop = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            script::watch(server, &login, &mut std::io::stdout(), stop).await
        }
        Some(Action::Canvas) => {
            script::canvas(server, password.as_deref(), &mut std::io::stdout()).await
        }
        Some(Action::Whose { x, y }) => {
            script::whose(server, password.as_deref(), *x, *y, &mut std::io::stdout()).await
        }
    }
}

fn init_logging(cli: &Cli) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match (&cli.log, &cli.command) {
        (Some(path), _) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("open the log file {}", path.display()))?;
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false)
                .init();
        }
        // Log lines would scribble over the UI.
        (None, None) => {}
        (None, Some(_)) => {
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .init();
        }
    }
    Ok(())
}
