//! `pixchat`: the terminal client, or with a subcommand one scripted action.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pixchat::client::{ClientError, Login, Transport, image, script, tui};
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
    /// Connect with TLS (the server needs --tls-cert), checking the
    /// server's certificate against the system's roots, or --ca.
    #[arg(long, global = true)]
    tls: bool,
    /// Trust only the certificates in this PEM file (a self-signed server
    /// certificate, or a private CA); implies --tls.
    #[arg(long, global = true, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Your user name; the UI asks for one when it is missing.
    #[arg(long, global = true)]
    name: Option<String>,
    /// The server's password (or its admin password, which also allows
    /// /kick and /ban); the UI asks for one when the server needs it.
    #[arg(long, global = true, env = "PIXCHAT_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// A template to draw by: a PNG image, mapped to the palette and shown
    /// as a ghost over the canvas (needs --at).
    #[arg(long, value_name = "IMAGE.png", requires = "at")]
    template: Option<PathBuf>,
    /// Where the template's top-left corner goes: X,Y (canvas pixels).
    #[arg(long, value_name = "X,Y", value_parser = parse_at, requires = "template")]
    at: Option<(u16, u16)>,
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
    /// Print the canvas as the text mode's CANVAS answer does, or with
    /// --png write it as an indexed PNG.
    Canvas {
        /// Write an indexed PNG here instead of printing text.
        #[arg(long, value_name = "FILE")]
        png: Option<std::path::PathBuf>,
        /// With --png: each canvas pixel becomes N x N image pixels.
        #[arg(long, default_value_t = 1, requires = "png", value_parser = clap::value_parser!(u32).range(1..=64))]
        scale: u32,
    },
    /// Print who placed the pixel at X Y last: NAME UNIX_MS SEQ, or nobody.
    Whose {
        /// Column, from 0.
        x: u32,
        /// Row, from 0.
        y: u32,
    },
    /// Moderate from the shell with the server's admin password.
    Admin {
        /// The server's admin password (prefer the environment: a flag
        /// shows in `ps`).
        #[arg(long, env = "PIXCHAT_ADMIN_PASSWORD", hide_env_values = true)]
        admin_password: String,
        #[command(subcommand)]
        action: AdminAction,
    },
}

/// `pixchat admin ...`.
#[derive(Debug, Subcommand)]
enum AdminAction {
    /// Print everyone online, one name per line (a * marks a quiet join).
    Who,
    /// Disconnect a user.
    Kick {
        /// Who.
        name: String,
    },
    /// Disconnect a user and refuse the name from now on.
    Ban {
        /// Who.
        name: String,
        /// Ban the address the user is connected from too (IPv6: its /64);
        /// the user must be online on this server.
        #[arg(long)]
        addr: bool,
    },
    /// Lift the ban on a name or an address.
    Unban {
        /// A name, or an address (as `bans` prints it, or plain).
        target: String,
    },
    /// Print the bans, names and addresses, one per line.
    Bans,
    /// Put back the colours a user's placements covered (only where nobody
    /// placed over them since), as new placements everyone sees.
    Rollback {
        /// Whose placements.
        name: String,
        /// Only those of the last MINUTES (default: all of them).
        #[arg(default_value_t = 0)]
        minutes: u32,
    },
    /// Paint the rectangle from (X1,Y1) to (X2,Y2), corners included, with
    /// one colour (at most 65,536 pixels).
    Fill {
        /// One corner's column.
        x1: u32,
        /// One corner's row.
        y1: u32,
        /// The other corner's column.
        x2: u32,
        /// The other corner's row.
        y2: u32,
        /// A palette index 0-15 or a name such as `red`.
        #[arg(value_parser = parse_color_arg)]
        color: u32,
    },
}

impl From<&AdminAction> for script::Admin {
    fn from(action: &AdminAction) -> Self {
        match action {
            AdminAction::Who => script::Admin::Who,
            AdminAction::Kick { name } => script::Admin::Kick { name: name.clone() },
            AdminAction::Ban { name, addr } => script::Admin::Ban {
                name: name.clone(),
                address: *addr,
            },
            AdminAction::Unban { target } => script::Admin::Unban {
                target: target.clone(),
            },
            AdminAction::Bans => script::Admin::Bans,
            AdminAction::Rollback { name, minutes } => script::Admin::Rollback {
                name: name.clone(),
                minutes: *minutes,
            },
            AdminAction::Fill {
                x1,
                y1,
                x2,
                y2,
                color,
            } => script::Admin::Fill {
                from: (*x1, *y1),
                to: (*x2, *y2),
                color: *color,
            },
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The local time zone can only be read safely while the process has
    // one thread, so before the runtime starts its workers.
    let utc_offset = time::UtcOffset::current_local_offset().map_or(0, |o| o.whole_seconds());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pixchat: start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&cli, utc_offset)) {
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
    if forbidden && matches!(cli.command, Some(Action::Admin { .. })) {
        " (the admin password: --admin-password or PIXCHAT_ADMIN_PASSWORD)"
    } else if forbidden && cli.password.as_deref().is_none_or(str::is_empty) {
        " (give the password with --password or PIXCHAT_PASSWORD)"
    } else {
        ""
    }
}

async fn run(cli: &Cli, utc_offset: i32) -> anyhow::Result<()> {
    init_logging(cli)?;
    let transport = match (&cli.ca, cli.tls) {
        (Some(ca), _) => Transport::tls_with_ca(ca).context("--ca")?,
        (None, true) => Transport::tls_system_roots().context("--tls")?,
        (None, false) => Transport::default(),
    };
    let target = script::Target {
        servers: cli.server.clone(),
        transport: transport.clone(),
    };
    let server = &target;
    let password = cli.password.clone().filter(|p| !p.is_empty());
    let login = |what: &str| {
        cli.name
            .clone()
            .map(|name| Login::new(name).with_password(password.clone()))
            .with_context(|| format!("{what} needs --name NAME"))
    };
    match &cli.command {
        None => {
            // Read before connecting: a wrong path is said at once.
            let template = match (&cli.template, cli.at) {
                (Some(path), Some(at)) => Some((
                    image::load(path).map_err(|e| anyhow::anyhow!("--template: {e}"))?,
                    at,
                )),
                _ => None,
            };
            tui::run(tui::Options {
                server: cli.server.clone(),
                name: cli.name.clone(),
                password,
                template,
                utc_offset,
                transport,
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
        Some(Action::Canvas { png: None, .. }) => {
            script::canvas(server, password.as_deref(), &mut std::io::stdout()).await
        }
        Some(Action::Canvas {
            png: Some(path),
            scale,
        }) => {
            let seq = script::canvas_png(server, password.as_deref(), path, *scale).await?;
            eprintln!("{}: the canvas at seq {seq}", path.display());
            Ok(())
        }
        Some(Action::Whose { x, y }) => {
            script::whose(server, password.as_deref(), *x, *y, &mut std::io::stdout()).await
        }
        Some(Action::Admin {
            admin_password,
            action,
        }) => {
            let action = script::Admin::from(action);
            script::admin(server, admin_password, &action, &mut std::io::stdout()).await
        }
    }
}

/// `--at X,Y`: a canvas pixel.
fn parse_at(s: &str) -> Result<(u16, u16), String> {
    let (x, y) = s
        .split_once(',')
        .ok_or_else(|| format!("{s:?}: write the pixel as X,Y (for example 10,20)"))?;
    let number = |v: &str| {
        v.trim()
            .parse::<u16>()
            .map_err(|_| format!("{s:?}: X and Y are whole numbers from 0"))
    };
    Ok((number(x)?, number(y)?))
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

/// A colour argument: a palette index or a name.
fn parse_color_arg(s: &str) -> Result<u32, String> {
    script::parse_color(s).map_err(|e| e.to_string())
}
