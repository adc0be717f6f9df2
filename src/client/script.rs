//! The scripting subcommands (`pixchat set|say|watch|canvas|whose`): one
//! short binary-mode session each, output in the text mode's exact lines
//! (or one plain line), and the server's own error as the failure, so shell
//! scripts and cron jobs can check `$?` and read stderr. On a server with a
//! password each session starts with `AUTH`, whether it joins or not.
//!
//! `set` and `say` join quietly (no `JOINED` or `LEFT` in anyone's chat;
//! `WHO` shows the name with a `*`), and check their arguments before
//! connecting, and the pixel against the canvas size before joining, so a
//! mistyped cron line neither joins nor leaves a trace.

use std::future::Future;
use std::io::Write;

use anyhow::Context;

use super::net::{ClientError, Connection, Login};
use crate::protocol::{
    Command, ErrorCode, MAX_SIDE, PALETTE, Reply, WireError, color_by_name, text, validate_name,
    validate_text,
};

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

/// A name for a `watch` run without `--name`: watching needs a join (only
/// joined connections get events), and names must be unique.
pub fn watcher_name() -> String {
    format!("watch-{:04x}", rand::random::<u16>())
}

/// A connection that may use commands that need no `JOIN`: after `AUTH`
/// when there is a password.
async fn authed(server: &str, password: Option<&str>) -> anyhow::Result<Connection> {
    let mut conn = Connection::connect(server).await?;
    if let Some(password) = password {
        conn.auth(password).await?;
    }
    Ok(conn)
}

async fn joined(server: &str, login: &Login) -> anyhow::Result<Connection> {
    join(Connection::connect(server).await?, login).await
}

async fn join(mut conn: Connection, login: &Login) -> anyhow::Result<Connection> {
    conn.join(login, None)
        .await
        .with_context(|| format!("join as {}", login.name))?;
    Ok(conn)
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
pub async fn set(server: &str, login: &Login, x: u32, y: u32, color: &str) -> anyhow::Result<u64> {
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
    let conn = Connection::connect(server).await?;
    // HELLO told the size: a pixel outside is refused before joining.
    let hello = conn.hello();
    check_pixel(x, y, hello.width.into(), hello.height.into())?;
    let mut conn = join(conn, &login.clone().quietly()).await?;
    let seq = match conn.request(&Command::Set { x, y, color }).await? {
        Reply::Set { seq } => seq,
        other => anyhow::bail!("SET was answered with {other:?}"),
    };
    // The pixel is placed; a failed goodbye changes nothing for the caller.
    let _ = conn.quit().await;
    Ok(seq)
}

/// Sends one chat message. Joins quietly.
pub async fn say(server: &str, login: &Login, message: &str) -> anyhow::Result<()> {
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
/// (an error, after the server's `BYE` line if it sent one).
pub async fn watch(
    server: &str,
    login: &Login,
    out: &mut impl Write,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    check_name(login)?;
    let mut conn = joined(server, login).await?;
    tokio::pin!(stop);
    let mut line = bytes::BytesMut::new();
    loop {
        let event = tokio::select! {
            _ = &mut stop => {
                let _ = conn.quit().await;
                return Ok(());
            }
            event = conn.next_event() => event?,
        };
        let Some(event) = event else {
            anyhow::bail!("the server closed the connection");
        };
        line.clear();
        text::encode_event(&event, &mut line);
        out.write_all(&line)
            .and_then(|_| out.flush())
            .context("write to standard output")?;
        if let crate::protocol::Event::Bye { code, text } = event {
            anyhow::bail!("the server closed the connection: {code}: {text}");
        }
    }
}

/// Writes the canvas as the text mode's `CANVAS` answer: `ROW <y> <hex>`
/// lines, then `OK <seq> <width> <height>`. Needs no name: `CANVAS` works
/// before `JOIN`, so it does not show up as a user.
pub async fn canvas(
    server: &str,
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

/// Writes who placed the pixel at `(x, y)` last as `NAME UNIX_MS SEQ`, or
/// `nobody`. Needs no name: `WHOSE` works before `JOIN`.
pub async fn whose(
    server: &str,
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
