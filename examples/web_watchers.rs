//! What a WebSocket watcher costs the server next to a TCP watcher: N
//! binary-mode watchers of one kind (TCP, or the page's `/ws` bridge) on a
//! running `pixchat-server`, one text writer placing P pixels at R per
//! second, and the server's CPU time (from `/proc/PID/stat`) per pixel
//! delivered.
//!
//! ```sh
//! pixchat-server --memory --listen 127.0.0.1:7878 --http 127.0.0.1:8080 &
//! cargo run --release --example web_watchers -- PID tcp 200 2000 500
//! cargo run --release --example web_watchers -- PID ws 200 2000 500
//! ```
//!
//! `PIXCHAT_TCP` and `PIXCHAT_HTTP` give other addresses. Loopback only;
//! every wait is bounded (60 s each).

use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// The server's addresses: `PIXCHAT_TCP` and `PIXCHAT_HTTP`, or the defaults.
fn addr(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}
const LIMIT: Duration = Duration::from_secs(60);

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

/// HELLO and a quiet JOIN as `name`.
fn greeting(name: &str) -> Vec<u8> {
    let mut out = frame(b"\x01PXCH\x00\x01");
    let mut join = vec![0x02, name.len() as u8];
    join.extend_from_slice(name.as_bytes());
    join.push(2);
    out.extend(frame(&join));
    out
}

/// Server CPU seconds (user + system) of `pid`.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the server's stat");
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Counts PIXEL frames on a TCP watcher until `want`.
async fn tcp_watcher(name: String, want: u64) -> u64 {
    let mut s = TcpStream::connect(addr("PIXCHAT_TCP", "127.0.0.1:7878"))
        .await
        .unwrap();
    s.write_all(&greeting(&name)).await.unwrap();
    let mut r = BufReader::new(s);
    let mut pixels = 0;
    let mut buf = vec![0u8; 1 << 16];
    while pixels < want {
        let mut len = [0u8; 4];
        if r.read_exact(&mut len).await.is_err() {
            break;
        }
        let len = u32::from_be_bytes(len) as usize;
        if buf.len() < len {
            buf.resize(len, 0);
        }
        r.read_exact(&mut buf[..len]).await.unwrap();
        if buf[0] == 0x40 {
            pixels += 1;
        }
    }
    pixels
}

/// Counts PIXEL messages on a WebSocket watcher until `want`.
async fn ws_watcher(name: String, want: u64) -> u64 {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{}/ws",
        addr("PIXCHAT_HTTP", "127.0.0.1:8080")
    ))
    .await
    .unwrap();
    use futures::SinkExt;
    let g = greeting(&name);
    let hello_len = 4 + 7;
    ws.send(Message::binary(g[..hello_len].to_vec()))
        .await
        .unwrap();
    ws.send(Message::binary(g[hello_len..].to_vec()))
        .await
        .unwrap();
    let mut pixels = 0;
    while pixels < want {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) if b.get(4) == Some(&0x40) => pixels += 1,
            Some(Ok(_)) => {}
            _ => break,
        }
    }
    pixels
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, pid, kind, n, p, rate] = &args[..] else {
        eprintln!("usage: web_watchers PID tcp|ws WATCHERS PIXELS RATE");
        std::process::exit(2);
    };
    let pid: u32 = pid.parse().unwrap();
    let n: u32 = n.parse().unwrap();
    let p: u64 = p.parse().unwrap();
    let rate: u64 = rate.parse().unwrap();
    let mut tasks = Vec::new();
    for i in 0..n {
        let name = format!("{kind}{i}");
        tasks.push(match kind.as_str() {
            "tcp" => tokio::spawn(tcp_watcher(name, p)),
            "ws" => tokio::spawn(ws_watcher(name, p)),
            _ => panic!("tcp or ws"),
        });
    }
    // Let every watcher join and take its snapshot.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writer = TcpStream::connect(addr("PIXCHAT_TCP", "127.0.0.1:7878"))
        .await
        .unwrap();
    let (rd, mut wr) = writer.into_split();
    let mut rd = BufReader::new(rd).lines();
    wr.write_all(b"JOIN writer quiet\n").await.unwrap();
    rd.next_line().await.unwrap();
    let cpu0 = cpu_s(pid);
    let start = Instant::now();
    let reader = tokio::spawn(async move {
        let mut oks = 0;
        while oks < p {
            match rd.next_line().await {
                Ok(Some(l)) if l.starts_with("OK") || l.starts_with("ERR") => oks += 1,
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    });
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    for i in 0..p {
        tick.tick().await;
        let line = format!("SET {} {} {}\n", i % 64, (i / 64) % 64, i % 16);
        wr.write_all(line.as_bytes()).await.unwrap();
    }
    let _ = tokio::time::timeout(LIMIT, reader).await;
    let mut delivered = 0;
    for t in tasks {
        delivered += tokio::time::timeout(LIMIT, t)
            .await
            .map(|r| r.unwrap_or(0))
            .unwrap_or(0);
    }
    let elapsed = start.elapsed();
    let cpu = cpu_s(pid) - cpu0;
    println!(
        "{kind}: {n} watchers, {p} pixels at {rate}/s: {delivered} of {} delivered in {:.2} s; server CPU {cpu:.2} s, {:.0} ns per delivery",
        u64::from(n) * p,
        elapsed.as_secs_f64(),
        cpu * 1e9 / delivered.max(1) as f64
    );
}
