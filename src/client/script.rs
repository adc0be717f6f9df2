//! The scripting subcommands (`pixchat set|say|watch|canvas|whose`, and
//! `pixchat admin ...` with the admin password): one
//! short binary-mode session each, output in the text mode's exact lines
//! (or one plain line), and the server's own error as the failure, so shell
//! scripts and cron jobs can check `$?` and read stderr. On a server with a
//! password each session starts with `AUTH`, whether it joins or not.
//!
//! `set` and `say` join quietly (no `JOINED` or `LEFT` in anyone's chat;
//! `WHO` shows the name with a `*`), and check their arguments before
//! connecting, and the pixel against the canvas size before joining, so a
//! mistyped cron line neither joins nor leaves a trace.
//!
//! `server` may list several servers of one cluster, separated by commas:
//! each command uses the first that serves, and `watch` moves to the next
//! when its server goes away, resuming from the last seq it printed, so no
//! pixel is missed or printed twice.

use std::future::Future;
use std::io::Write;
use std::time::Duration;

use anyhow::Context;

use super::net::{Backoff, ClientError, Connection, Joined, Login, server_list};
use super::transport::Transport;
use crate::protocol::{
    Command, ErrorCode, Event, MAX_SIDE, PALETTE, Reply, Resume, WireError, color_by_name, text,
    validate_name, validate_text,
};

/// How long `watch` keeps trying to get back on some server of its list
/// before it gives up: longer than a cluster's lease (5 s by default), for
/// which a dead server still holds the watcher's name.
pub const REJOIN_WAIT: Duration = Duration::from_secs(30);

/// Reads a colour as the text mode does: a palette index or a colour name
/// (ignoring case). The index is not checked against the palette here:
/// [`set`] refuses 16 and above with the server's own `out_of_range`.
pub fn parse_color(s: &str) -> anyhow::Result<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(n);
    }
    color_by_name(s).map(u32::from).with_context(|| {
        let names: Vec<&str> = PALETTE.iter().map(|c| c.name).collect();
        format!(
            "unknown colour {s:?}: use 0-15 or one of {}",
            names.join(", ")
        )
    })
}

/// The servers a subcommand uses (a [`server_list`]) and how to reach
/// them.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port`, or several servers of one cluster separated by commas.
    pub servers: String,
    /// Plain TCP or TLS.
    pub transport: Transport,
}

impl From<&str> for Target {
    fn from(servers: &str) -> Self {
        Self {
            servers: servers.to_string(),
            transport: Transport::default(),
        }
    }
}

/// A name for a `watch` run without `--name`: watching needs a join (only
/// joined connections get events), and names must be unique.
pub fn watcher_name() -> String {
    format!("watch-{:04x}", rand::random::<u16>())
}

/// A connection that may use commands that need no `JOIN`: after `AUTH`
/// when there is a password.
async fn authed(server: &Target, password: Option<&str>) -> anyhow::Result<Connection> {
    let (mut conn, _) = Connection::connect_any_via(&server.servers, &server.transport).await?;
    if let Some(password) = password {
        conn.auth(password).await?;
    }
    Ok(conn)
}

async fn joined(server: &Target, login: &Login) -> anyhow::Result<Connection> {
    let (conn, _, _) = join_from(
        &server_list(&server.servers),
        &server.transport,
        0,
        login,
        None,
        |_| Ok(()),
    )
    .await?;
    Ok(conn)
}

/// Joins on the first of `servers`, from number `from` on, that serves
/// (one that is down, or cannot serve now, is skipped); `check` looks at
/// each server's `HELLO` before joining. Returns the connection, what the
/// join brought and which server it is.
async fn join_from(
    servers: &[String],
    transport: &Transport,
    from: usize,
    login: &Login,
    resume: Option<Resume>,
    check: impl Fn(&Connection) -> anyhow::Result<()>,
) -> anyhow::Result<(Connection, Joined, usize)> {
    let mut last: Option<anyhow::Error> = None;
    for k in 0..servers.len() {
        let at = (from + k) % servers.len();
        let mut conn = match Connection::connect_via(servers[at].as_str(), transport).await {
            Ok(conn) => conn,
            Err(e) if e.is_server_down() => {
                last = Some(e.into());
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        check(&conn)?;
        match conn.join(login, resume).await {
            Ok(joined) => return Ok((conn, joined, at)),
            Err(e) => {
                let down = e.is_server_down();
                let e = anyhow::Error::new(e).context(format!("join as {}", login.name));
                if !down {
                    return Err(e);
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no server address given")))
}

/// Whether a refused join may succeed a little later: the server is down,
/// or the name is still held by the lease of the server that went away.
fn worth_waiting(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<ClientError>())
        .any(|c| c.is_server_down() || c.wire().is_some_and(|w| w.code == ErrorCode::NameTaken))
}

/// The error the server would give, found without asking it: the same
/// code and words, so a script reads one kind of failure.
fn refuse(code: ErrorCode, message: String) -> anyhow::Error {
    ClientError::Server(WireError::new(code, message)).into()
}

/// `--name`, checked as the server would check it.
fn check_name(login: &Login) -> anyhow::Result<()> {
    validate_name(&login.name)
        .map_err(ClientError::Server)
        .with_context(|| format!("--name {:?}", login.name))
}

/// A pixel inside a `width` x `height` canvas, in the server's words.
fn check_pixel(x: u32, y: u32, width: u32, height: u32) -> anyhow::Result<()> {
    if x >= width || y >= height {
        return Err(refuse(
            ErrorCode::OutOfRange,
            format!("x must be 0-{} and y 0-{}", width - 1, height - 1),
        ));
    }
    Ok(())
}

/// Places one pixel and returns its seq. Joins quietly.
pub async fn set(
    server: &Target,
    login: &Login,
    x: u32,
    y: u32,
    color: &str,
) -> anyhow::Result<u64> {
    let color = parse_color(color)?;
    if color as usize >= PALETTE.len() {
        return Err(refuse(
            ErrorCode::OutOfRange,
            format!("color must be 0-{}", PALETTE.len() - 1),
        ));
    }
    check_name(login)?;
    let side = u32::from(MAX_SIDE);
    check_pixel(x, y, side, side)?;
    // HELLO tells the size: a pixel outside is refused before joining.
    let inside = |conn: &Connection| {
        let hello = conn.hello();
        check_pixel(x, y, hello.width.into(), hello.height.into())
    };
    let (mut conn, _, _) = join_from(
        &server_list(&server.servers),
        &server.transport,
        0,
        &login.clone().quietly(),
        None,
        inside,
    )
    .await?;
    let seq = match conn.request(&Command::Set { x, y, color }).await? {
        Reply::Set { seq } => seq,
        other => anyhow::bail!("SET was answered with {other:?}"),
    };
    // The pixel is placed; a failed goodbye changes nothing for the caller.
    let _ = conn.quit().await;
    Ok(seq)
}

/// Sends one chat message. Joins quietly.
pub async fn say(server: &Target, login: &Login, message: &str) -> anyhow::Result<()> {
    validate_text(message).map_err(ClientError::Server)?;
    check_name(login)?;
    let mut conn = joined(server, &login.clone().quietly()).await?;
    conn.request(&Command::Say {
        text: message.to_string(),
    })
    .await?;
    let _ = conn.quit().await;
    Ok(())
}

/// Writes every event as its text-mode line until `stop` completes (then
/// it says goodbye and returns `Ok`) or the server closes the connection
/// (an error, after the server's `BYE` line if it sent one). With several
/// servers, it moves to the next one instead and joins there with the last
/// seq it printed (the binary `JOIN` with resume, `SYNC`'s counterpart):
/// the pixels placed meanwhile come first, then live events again.
pub async fn watch(
    server: &Target,
    login: &Login,
    out: &mut impl Write,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    check_name(login)?;
    let servers = server_list(&server.servers);
    let transport = &server.transport;
    let failover = servers.len() > 1;
    let (mut conn, joined, mut at) =
        join_from(&servers, transport, 0, login, None, |_| Ok(())).await?;
    let mut resume = resume_point(&joined, None);
    tokio::pin!(stop);
    let mut line = bytes::BytesMut::new();
    loop {
        let event = tokio::select! {
            _ = &mut stop => {
                let _ = conn.quit().await;
                return Ok(());
            }
            event = conn.next_event() => event,
        };
        let why = match event {
            Ok(Some(Event::Bye { code, text }))
                if failover && !matches!(code, ErrorCode::Kicked | ErrorCode::Banned) =>
            {
                format!("{code}: {text}")
            }
            Ok(Some(event)) => {
                line.clear();
                text::encode_event(&event, &mut line);
                out.write_all(&line)
                    .and_then(|_| out.flush())
                    .context("write to standard output")?;
                match event {
                    Event::Pixel(p) => resume.seq = resume.seq.max(p.seq),
                    Event::Bye { code, text } => {
                        anyhow::bail!("the server closed the connection: {code}: {text}")
                    }
                    _ => {}
                }
                continue;
            }
            Ok(None) if failover => "it closed the connection".to_string(),
            Ok(None) => anyhow::bail!("the server closed the connection"),
            Err(e) if failover => e.to_string(),
            Err(e) => return Err(e.into()),
        };
        tracing::warn!(server = %servers[at], why, "lost the server; moving to the next");
        let rejoined = tokio::select! {
            _ = &mut stop => return Ok(()),
            r = rejoin(&servers, transport, at + 1, login, resume) => r?,
        };
        let joined;
        (conn, joined, at) = rejoined;
        if joined.snapshot.is_some() {
            tracing::warn!(
                server = %servers[at],
                "the pixels placed meanwhile could not be replayed (the server no longer holds them)"
            );
        }
        resume = resume_point(&joined, Some(resume));
    }
}

/// Where a watcher stands after a join: at the snapshot's seq, or still
/// where it was when the server replays what it missed.
fn resume_point(joined: &Joined, before: Option<Resume>) -> Resume {
    let seq = match (&joined.snapshot, before) {
        (Some(s), _) => s.seq,
        (None, Some(r)) => r.seq,
        (None, None) => joined.welcome.seq,
    };
    Resume {
        canvas_id: joined.welcome.canvas_id,
        seq,
    }
}

/// Joins again on some server of the list, from number `from` on, with
/// `resume`; keeps trying, with backoff, for up to [`REJOIN_WAIT`] while
/// the servers are down or the name is still held by the one that left.
async fn rejoin(
    servers: &[String],
    transport: &Transport,
    from: usize,
    login: &Login,
    resume: Resume,
) -> anyhow::Result<(Connection, Joined, usize)> {
    let deadline = tokio::time::Instant::now() + REJOIN_WAIT;
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(4));
    let mut from = from;
    loop {
        match join_from(servers, transport, from, login, Some(resume), |_| Ok(())).await {
            Ok(joined) => return Ok(joined),
            Err(e) if worth_waiting(&e) && tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %format!("{e:#}"), "no server took us back yet");
                tokio::time::sleep(backoff.next_delay()).await;
                from += 1;
            }
            Err(e) => return Err(e.context("no server of the list took the watcher back")),
        }
    }
}

/// Writes the canvas as the text mode's `CANVAS` answer: `ROW <y> <hex>`
/// lines, then `OK <seq> <width> <height>`. Needs no name: `CANVAS` works
/// before `JOIN`, so it does not show up as a user.
pub async fn canvas(
    server: &Target,
    password: Option<&str>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut conn = authed(server, password).await?;
    let snapshot = match conn.request(&Command::Canvas).await? {
        Reply::Canvas(s) => s,
        other => anyhow::bail!("CANVAS was answered with {other:?}"),
    };
    out.write_all(&text::encode_canvas(&snapshot))
        .and_then(|_| out.flush())
        .context("write to standard output")?;
    let _ = conn.quit().await;
    Ok(())
}

/// Writes the canvas as an indexed PNG, each pixel `scale` x `scale`.
/// Returns the seq it shows.
#[cfg(feature = "tui")]
pub async fn canvas_png(
    server: &Target,
    password: Option<&str>,
    path: &std::path::Path,
    scale: u32,
) -> anyhow::Result<u64> {
    let mut conn = authed(server, password).await?;
    let snapshot = match conn.request(&Command::Canvas).await? {
        Reply::Canvas(s) => s,
        other => anyhow::bail!("CANVAS was answered with {other:?}"),
    };
    let _ = conn.quit().await;
    let file = std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    crate::image::write_png(
        std::io::BufWriter::new(file),
        &snapshot.pixels,
        snapshot.width,
        snapshot.height,
        scale,
    )
    .with_context(|| format!("write {}", path.display()))?;
    Ok(snapshot.seq)
}

/// Writes who placed the pixel at `(x, y)` last as `NAME UNIX_MS SEQ`, or
/// `nobody`. Needs no name: `WHOSE` works before `JOIN`.
pub async fn whose(
    server: &Target,
    password: Option<&str>,
    x: u32,
    y: u32,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut conn = authed(server, password).await?;
    let line = match conn.whose(x, y).await? {
        Some(p) => format!("{} {} {}\n", p.name, p.unix_ms, p.seq),
        None => "nobody\n".to_string(),
    };
    out.write_all(line.as_bytes())
        .and_then(|_| out.flush())
        .context("write to standard output")?;
    let _ = conn.quit().await;
    Ok(())
}

/// What `pixchat admin` does: one admin command over the protocol, after
/// `AUTH` with the admin password. A new admin action is a variant here,
/// its command in [`Admin::command`] and its output in [`admin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admin {
    /// List everyone online, one name per line (all pages of `WHO`).
    Who,
    /// Disconnect a user (`KICK`).
    Kick {
        /// Who.
        name: String,
    },
    /// Ban a name (`BAN`), and with `address` the address the user is
    /// connected from too (`BAN <name> addr`).
    Ban {
        /// Who.
        name: String,
        /// Ban the user's address too.
        address: bool,
    },
    /// Lift the ban on a name or an address (`UNBAN`).
    Unban {
        /// A name, or an address as `bans` prints it or plain.
        target: String,
    },
    /// List the bans, one per line (all pages of `BANS`).
    Bans,
    /// Put back what a user placed in the last `minutes` (0: ever), where
    /// nobody placed over it since (`ROLLBACK`); repeated while the server
    /// reports pixels left over its per-command cap.
    Rollback {
        /// Whose placements.
        name: String,
        /// The window; 0 is all time.
        minutes: u32,
    },
    /// Paint a rectangle, corners included (`FILL`).
    Fill {
        /// One corner.
        from: (u32, u32),
        /// The opposite corner.
        to: (u32, u32),
        /// Palette index.
        color: u32,
    },
}

impl Admin {
    /// The command that does it (the first page, for listings).
    fn command(&self) -> Command {
        match self {
            Admin::Who => Command::Who,
            Admin::Kick { name } => Command::Kick { name: name.clone() },
            Admin::Ban {
                name,
                address: false,
            } => Command::Ban { name: name.clone() },
            Admin::Ban {
                name,
                address: true,
            } => Command::BanAddress { name: name.clone() },
            Admin::Unban { target } => Command::Unban {
                name: target.clone(),
            },
            Admin::Bans => Command::Bans { after: None },
            Admin::Rollback { name, minutes } => Command::Rollback {
                name: name.clone(),
                minutes: *minutes,
            },
            Admin::Fill { from, to, color } => Command::Fill {
                x1: from.0,
                y1: from.1,
                x2: to.0,
                y2: to.1,
                color: *color,
            },
        }
    }
}

/// Runs one admin action on the first server of `server` that answers,
/// after `AUTH` with `admin_password`; listings are written to `out`, one
/// entry per line. A refusal is the server's own error.
pub async fn admin(
    server: &Target,
    admin_password: &str,
    action: &Admin,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut conn = authed(server, Some(admin_password)).await?;
    let mut cmd = action.command();
    loop {
        let listed = match conn.request(&cmd).await? {
            Reply::Ok => break,
            Reply::Who { users, .. } => users,
            Reply::Bans { entries, .. } => entries,
            // A bulk change prints what it placed; a rollback over the
            // per-command cap goes on until nothing is left.
            Reply::Bulk { placed, seq, more } => {
                writeln!(out, "placed {placed} pixels (last seq {seq})")
                    .context("write to standard output")?;
                if more > 0 && placed > 0 && matches!(action, Admin::Rollback { .. }) {
                    continue;
                }
                break;
            }
            other => anyhow::bail!("{cmd:?} was answered with {other:?}"),
        };
        let Some(last) = listed.last().cloned() else {
            break;
        };
        for entry in &listed {
            writeln!(out, "{entry}").context("write to standard output")?;
        }
        // The next page, until one comes back empty.
        cmd = match action {
            Admin::Who => Command::WhoAfter { after: last },
            _ => Command::Bans { after: Some(last) },
        };
    }
    out.flush().context("write to standard output")?;
    let _ = conn.quit().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_indexes_or_names() {
        assert_eq!(parse_color("5").unwrap(), 5);
        assert_eq!(parse_color("Red").unwrap(), 5);
        assert_eq!(parse_color("99").unwrap(), 99);
        let err = parse_color("mauve").unwrap_err().to_string();
        assert!(err.contains("mauve") && err.contains("purple"), "{err}");
    }

    #[test]
    fn watcher_names_are_valid() {
        let name = watcher_name();
        crate::protocol::validate_name(&name).unwrap();
        assert!(name.starts_with("watch-"));
    }
}
