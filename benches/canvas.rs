//! Micro-benchmarks of the hub's data structures on the hot path: applying
//! a pixel, recording it for SYNC, appending it to the broadcast log, and
//! copying a watcher's backlog out of the log.

use std::sync::Arc;

use bytes::BytesMut;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pixchat::protocol::Mode;
use pixchat::protocol::{Event, Pixel};
use pixchat::server::bench_internals::{BroadcastRing, Canvas, History};
use pixchat::server::broadcast::BroadcastLimits;

fn canvas(c: &mut Criterion) {
    let mut g = c.benchmark_group("canvas");
    g.throughput(Throughput::Elements(1));
    let name: Arc<str> = Arc::from("painter");
    let mut canvas = Canvas::new(1, 1024, 1024).unwrap();
    let mut i = 0u32;
    g.bench_function("check + apply", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            let (x, y, col) = canvas.check(i % 1024, (i / 1024) % 1024, i % 16).unwrap();
            black_box(canvas.apply(x, y, col, &name, 1_700_000_000_000));
        })
    });
    let mut history = History::new(100_000);
    let mut seq = 0;
    g.bench_function("history push", |b| {
        b.iter(|| {
            seq += 1;
            history.push(Pixel {
                seq,
                x: 1,
                y: 2,
                color: 3,
                name: name.clone(),
            });
        })
    });
    g.finish();
}

fn log(c: &mut Criterion) {
    let mut g = c.benchmark_group("broadcast log");
    let log = BroadcastRing::new(BroadcastLimits::default());
    let name: Arc<str> = Arc::from("painter");
    let mut seq = 0;
    g.throughput(Throughput::Elements(1));
    g.bench_function("append (encode both modes) + publish", |b| {
        b.iter(|| {
            seq += 1;
            let end = log.append(&Event::Pixel(Pixel {
                seq,
                x: 1,
                y: 2,
                color: 3,
                name: name.clone(),
            }));
            log.publish(end);
        })
    });
    // A watcher catching up on 100 events in one copy: what one write of
    // the fan-out gathers.
    let end = log.end();
    let mut out = BytesMut::with_capacity(1 << 16);
    g.throughput(Throughput::Elements(100));
    g.bench_function("copy 100 events (binary)", |b| {
        b.iter(|| {
            out.clear();
            black_box(
                log.copy(Mode::Binary, end - 100, end, 64 * 1024, &mut out)
                    .unwrap(),
            );
        })
    });
    g.finish();
}

criterion_group!(benches, canvas, log);
criterion_main!(benches);
