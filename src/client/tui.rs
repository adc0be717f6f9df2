//! The terminal UI's loop: one `select!` over the terminal's events, the
//! network client's reports, a one-second tick and signals, each turned into
//! an [`AppEvent`] for [`App::update`]; the resulting intents go to the
//! network client; then one redraw. Nothing here blocks on the network, so
//! keys and drawing stay live whatever the server does.

use std::io::stdout;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{DisableMouseCapture, EnableMouseCapture, EventStream};
use ratatui::crossterm::execute;
use tokio::sync::mpsc;

use super::app::{App, Intent};
use super::color::ColorMode;
use super::event::AppEvent;
use super::net::{Client, ClientConfig, ClientEvent, RequestError};
use super::ui;

/// How often the screen is refreshed with nothing happening (countdowns,
/// notices expiring).
const TICK: Duration = Duration::from_secs(1);
/// The refresh while a countdown in tenths of a second is on screen.
const FAST_TICK: Duration = Duration::from_millis(100);
/// Network reports applied before one redraw, so a burst of pixels costs
/// one frame, not one frame each.
const BATCH: usize = 4096;

/// What the terminal UI needs to start.
#[derive(Clone)]
pub struct Options {
    /// Server address.
    pub server: String,
    /// Join at once with this name; without it the UI asks.
    pub name: Option<String>,
    /// The server password; without it the UI asks when the server wants
    /// one.
    pub password: Option<String>,
    /// A template image read already (`--template`), and the canvas pixel
    /// of its top-left corner (`--at`).
    pub template: Option<(super::image::Image, (u16, u16))>,
    /// Seconds east of UTC, for the chat's timestamps.
    pub utc_offset: i32,
    /// Plain TCP or TLS.
    pub transport: super::Transport,
}

impl std::fmt::Debug for Options {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("server", &self.server)
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("transport", &self.transport)
            .field(
                "template",
                &self.template.as_ref().map(|(i, at)| (&i.name, at)),
            )
            .finish()
    }
}

/// The terminal in raw mode, on the alternate screen, with mouse capture.
/// Dropping it restores all three, on every way out of [`run`]; a panic
/// restores them through the hook [`Term::enter`] installs.
struct Term {
    terminal: DefaultTerminal,
}

impl Term {
    fn enter() -> anyhow::Result<Self> {
        // Installed before ratatui's hook, which restores raw mode and the
        // screen and then calls this one. A panic in any task leaves the
        // UI unusable, so after the report the process ends.
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = execute!(stdout(), DisableMouseCapture);
            report(info);
            std::process::exit(101);
        }));
        let terminal = ratatui::try_init().context("set up the terminal")?;
        let term = Term { terminal };
        execute!(stdout(), EnableMouseCapture).context("enable mouse capture")?;
        Ok(term)
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        let _ = execute!(stdout(), DisableMouseCapture);
        ratatui::restore();
    }
}

/// Runs the terminal UI until the user quits.
pub async fn run(options: Options) -> anyhow::Result<()> {
    let (client, mut net) = Client::spawn(ClientConfig {
        transport: options.transport.clone(),
        ..ClientConfig::new(options.server.clone())
    });
    let mut app = App::new(options.server, options.name, ColorMode::detect())
        .with_password(options.password)
        .with_utc_offset(options.utc_offset);
    if let Some((image, at)) = options.template {
        app = app.with_template(image, at);
    }
    let result = drive(&mut app, &client, &mut net).await;
    client.shutdown().await;
    result
}

async fn drive(
    app: &mut App,
    client: &Client,
    net: &mut mpsc::Receiver<ClientEvent>,
) -> anyhow::Result<()> {
    let mut term = Term::enter()?;
    let size = term.terminal.size().context("read the terminal size")?;
    let start = app.start();
    let mut quit = carry_out(app, client, start);
    quit |= step(
        app,
        client,
        AppEvent::Resize {
            width: size.width,
            height: size.height,
        },
    );
    let mut input = EventStream::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut signals = Signals::new()?;
    while !quit {
        // A resize the terminal has not reported yet still reaches the
        // state before the frame, so the layout kept for clicks is the
        // one drawn.
        let size = term.terminal.size().context("read the terminal size")?;
        if (size.width, size.height) != app.size {
            let (width, height) = (size.width, size.height);
            if step(app, client, AppEvent::Resize { width, height }) {
                break;
            }
        }
        term.terminal
            .draw(|frame| ui::draw(frame, app))
            .context("draw")?;
        let event = tokio::select! {
            event = input.next() => match event {
                Some(Ok(event)) => match AppEvent::from_terminal(event) {
                    Some(event) => event,
                    None => continue,
                },
                Some(Err(e)) => return Err(e).context("read the terminal"),
                // The terminal is gone: nobody to draw for.
                None => AppEvent::Quit,
            },
            Some(event) = net.recv() => AppEvent::Net(event),
            _ = tick.tick() => AppEvent::Tick,
            _ = tokio::time::sleep(FAST_TICK), if app.animating() => AppEvent::Tick,
            _ = signals.recv() => AppEvent::Quit,
        };
        quit = step(app, client, event);
        let mut batched = 0;
        while !quit && batched < BATCH {
            let Ok(event) = net.try_recv() else { break };
            quit = step(app, client, AppEvent::Net(event));
            batched += 1;
        }
    }
    drop(term);
    Ok(())
}

/// Applies one event and carries out its intents; true when it is time
/// to quit.
fn step(app: &mut App, client: &Client, event: AppEvent) -> bool {
    let intents = app.update(event, Instant::now());
    carry_out(app, client, intents)
}

fn carry_out(app: &mut App, client: &Client, intents: Vec<Intent>) -> bool {
    let mut quit = false;
    for intent in intents {
        match intent {
            Intent::Quit => quit = true,
            Intent::LoadTemplate { path, at } => {
                // A small file read; the loop may wait for it.
                let image = super::image::load(std::path::Path::new(&path));
                quit |= step(app, client, AppEvent::Template { image, at });
            }
            Intent::Login(login) => {
                // Fails only once the client task is gone, which the next
                // report makes plain.
                let _ = client.login(login);
            }
            Intent::Send { tag, cmd } => {
                if client.send(tag, cmd).is_err() {
                    // The command never left: answer it as unsent, so the
                    // pixel is queued or the text goes back to the input.
                    let result = Err(RequestError::NotConnected);
                    let event = AppEvent::Net(ClientEvent::Reply { tag, result });
                    quit |= step(app, client, event);
                }
            }
        }
    }
    quit
}

/// SIGTERM, SIGHUP and SIGINT: in raw mode Ctrl-C is a key, but `kill` and
/// a closed terminal still arrive as signals, and the terminal must be
/// restored for them too.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate()).context("watch SIGTERM")?,
                hup: signal(SignalKind::hangup()).context("watch SIGHUP")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.hup.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
