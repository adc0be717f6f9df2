//! Micro-benchmarks of the wire codecs: what every placement costs to
//! encode once for the broadcast log, and what a command costs to decode.

use std::sync::Arc;

use bytes::BytesMut;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pixchat::protocol::{Command, Event, Pixel, binary, text};
use tokio_util::codec::Decoder;

fn pixel() -> Event {
    Event::Pixel(Pixel {
        seq: 123_456_789,
        x: 512,
        y: 384,
        color: 5,
        name: Arc::from("watcher-0042"),
    })
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode PIXEL");
    g.throughput(Throughput::Elements(1));
    let event = pixel();
    let mut out = BytesMut::with_capacity(1 << 16);
    g.bench_function("binary", |b| {
        b.iter(|| {
            out.clear();
            binary::encode_event(black_box(&event), &mut out);
        })
    });
    g.bench_function("text", |b| {
        b.iter(|| {
            out.clear();
            text::encode_event(black_box(&event), &mut out);
        })
    });
    g.finish();
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode 1000 SET");
    g.throughput(Throughput::Elements(1000));
    let mut frames = BytesMut::new();
    let mut lines = BytesMut::new();
    for i in 0..1000u32 {
        binary::encode_command(
            &Command::Set {
                x: i % 1024,
                y: i / 1024,
                color: i % 16,
            },
            &mut frames,
        );
        lines.extend_from_slice(format!("SET {} {} {}\n", i % 1024, i / 1024, i % 16).as_bytes());
    }
    g.bench_function("binary frames", |b| {
        b.iter(|| {
            let mut codec = binary::ServerCodec::default();
            let mut buf = frames.clone();
            let mut n = 0;
            while let Ok(Some(cmd)) = codec.decode(&mut buf) {
                black_box(cmd.is_ok());
                n += 1;
            }
            assert_eq!(n, 1000);
        })
    });
    g.bench_function("text lines", |b| {
        b.iter(|| {
            let mut codec = text::LineCodec::new();
            let mut buf = lines.clone();
            let mut n = 0;
            while let Ok(Some(cmd)) = codec.decode(&mut buf) {
                black_box(cmd.is_ok());
                n += 1;
            }
            assert_eq!(n, 1000);
        })
    });
    g.finish();
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);
