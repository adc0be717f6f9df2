//! One frame of the terminal client's screen, the canvas zoomed out to
//! show all of it: what the UI draws for every batch of pixel events. A
//! frame has about 16 ms (60 per second); these show how much of it the
//! drawing takes on 1024x1024 and 4096x4096 canvases in a 200x60 terminal.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use pixchat::client::ClientEvent;
use pixchat::client::app::App;
use pixchat::client::color::ColorMode;
use pixchat::client::event::AppEvent;
use pixchat::client::ui;
use pixchat::protocol::{PALETTE, Snapshot, Welcome};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

const TERMINAL: (u16, u16) = (200, 60);

/// A client online on a `side` x `side` canvas of busy pixels (every
/// block holds many colours), zoomed in again `back` steps from as far
/// out as it goes.
fn zoomed_out(side: u16, back: usize) -> App {
    let now = Instant::now();
    let mut app = App::new("127.0.0.1:7878", Some("bench".into()), ColorMode::TrueColor);
    app.start();
    app.update(
        AppEvent::Resize {
            width: TERMINAL.0,
            height: TERMINAL.1,
        },
        now,
    );
    let n = usize::from(side) * usize::from(side);
    let pixels = (0..n)
        .map(|i| ((i * 2_654_435_761) >> 7) as u8 % 16)
        .collect();
    let snapshot = Arc::new(Snapshot {
        canvas_id: 1,
        seq: 0,
        width: side,
        height: side,
        pixels,
    });
    let welcome = Welcome {
        name: "bench".into(),
        canvas_id: 1,
        width: side,
        height: side,
        seq: 0,
        palette: PALETTE
            .iter()
            .map(|c| (c.rgb, c.name.to_string()))
            .collect(),
        online: 1,
        users: vec!["bench".into()],
        resumed: false,
    };
    app.update(
        AppEvent::Net(ClientEvent::Joined {
            welcome,
            snapshot: Some(snapshot),
        }),
        now,
    );
    let minus = KeyEvent::new(KeyCode::Char('-'), KeyModifiers::NONE);
    for _ in 0..12 {
        app.update(AppEvent::Key(minus), now);
    }
    let plus = KeyEvent::new(KeyCode::Char('+'), KeyModifiers::NONE);
    for _ in 0..back {
        app.update(AppEvent::Key(plus), now);
    }
    app
}

fn frame(c: &mut Criterion) {
    let mut g = c.benchmark_group("zoomed-out frame 200x60");
    // The whole canvas; and one step in on 4096x4096, where each dot
    // adds up 16 of the smallest counted blocks (the most work a dot
    // takes).
    for (side, back) in [(1024u16, 0), (4096, 0), (4096, 1)] {
        let app = zoomed_out(side, back);
        let zoom = app.canvas.zoom.label();
        let mut terminal = Terminal::new(TestBackend::new(TERMINAL.0, TERMINAL.1)).unwrap();
        g.bench_function(format!("{side}x{side} at {zoom}"), |b| {
            b.iter(|| {
                terminal
                    .draw(|frame| ui::draw(frame, black_box(&app)))
                    .unwrap();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, frame);
criterion_main!(benches);
