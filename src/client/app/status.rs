//! The status bar's own state: a notice that goes away by itself and the
//! cooldown countdown; and the clocks and wording they are shown with.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a notice (an error from the server, a hint) stays up.
pub const NOTICE_TIME: Duration = Duration::from_secs(5);

/// A short message in the status bar that goes away by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The message.
    pub text: String,
    /// When it goes away.
    pub until: Instant,
    /// How it is drawn.
    pub kind: NoticeKind,
}

/// What a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// Something failed or needs attention.
    Error,
    /// An answer the user asked for.
    Info,
}

/// Pixels are refused until `until`: the server answered `cooldown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cooldown {
    /// When placing works again.
    pub until: Instant,
}

/// The status bar's notice and countdown.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Current notice.
    pub notice: Option<Notice>,
    /// Placing is refused until then (the server's `cooldown`).
    pub cooldown: Option<Cooldown>,
}

impl Status {
    /// Shows an error or a hint for [`NOTICE_TIME`].
    pub fn notify(&mut self, now: Instant, text: impl Into<String>) {
        self.show(now, text.into(), NoticeKind::Error);
    }

    /// Shows an answer the user asked for, for [`NOTICE_TIME`].
    pub fn inform(&mut self, now: Instant, text: impl Into<String>) {
        self.show(now, text.into(), NoticeKind::Info);
    }

    fn show(&mut self, now: Instant, text: String, kind: NoticeKind) {
        self.notice = Some(Notice {
            text,
            until: now + NOTICE_TIME,
            kind,
        });
    }

    /// Refuses placing until `until`, unless a longer cooldown runs.
    pub fn cool_down(&mut self, until: Instant) {
        if self.cooldown.is_none_or(|c| c.until < until) {
            self.cooldown = Some(Cooldown { until });
        }
    }

    /// Drops what ran out by `now`.
    pub fn expire(&mut self, now: Instant) {
        if self.notice.as_ref().is_some_and(|n| n.until <= now) {
            self.notice = None;
        }
        if self.cooldown.is_some_and(|c| c.until <= now) {
            self.cooldown = None;
        }
    }

    /// How long placing is still refused at `now`, if it is.
    pub fn cooldown_left(&self, now: Instant) -> Option<Duration> {
        self.cooldown
            .map(|c| c.until.saturating_duration_since(now))
            .filter(|left| !left.is_zero())
    }
}

/// The wall clock at one instant, so "how long ago" can be worked out
/// from the monotonic time passed to [`App::update`](super::App::update).
/// Read once at start; tests set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    /// The instant.
    pub at: Instant,
    /// Unix time at `at`, in milliseconds.
    pub unix_ms: u64,
}

impl WallClock {
    /// The system clock now.
    pub fn now() -> Self {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Self {
            at: Instant::now(),
            unix_ms,
        }
    }

    /// Unix milliseconds at `now`.
    pub fn unix_ms(&self, now: Instant) -> u64 {
        match now.checked_duration_since(self.at) {
            Some(d) => self.unix_ms.saturating_add(d.as_millis() as u64),
            None => self
                .unix_ms
                .saturating_sub(self.at.duration_since(now).as_millis() as u64),
        }
    }
}

/// A duration in seconds with one decimal, rounded up, so it never shows
/// 0.0 while time is left: "2.4 s".
pub fn format_tenths(d: Duration) -> String {
    let tenths = d.as_millis().div_ceil(100);
    format!("{}.{} s", tenths / 10, tenths % 10)
}

/// How long ago something happened, `ms` milliseconds back, in words.
pub fn format_ago(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0 => "just now".into(),
        1..60 => format!("{secs} s ago"),
        60..3600 => format!("{} min ago", secs / 60),
        3600..172_800 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}
