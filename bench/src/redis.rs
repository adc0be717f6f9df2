//! The fan-out workload against Redis pub/sub: watchers `SUBSCRIBE` to one
//! channel, writers `PUBLISH` 16-byte messages to it, with the same pacing,
//! window and counts as pixchat's side (see [`super::shared`]).
//!
//! A message carries the writer id (u32), the placement number k (u64) and
//! four bytes of padding, all big-endian: the watcher finds the send time
//! in slot `k % slots` of that writer's table. Redis has no seq, but it
//! handles one connection's commands in order, so each watcher expects
//! every writer's k to arrive as 0, 1, 2, ... without gaps; at the end the
//! k it never got, up to the number of acknowledged `PUBLISH`es, are lost.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{Semaphore, mpsc, watch};

use super::inbuf::InBuf;
use super::latency::{Lookup, Tally};
use super::resp::{self, Resp, Scalar};
use super::shared::{
    End, Final, Position, Shared, WATCHER_BUFFER, WatcherOutcome, WriterRun, WriterState,
    run_writer, watcher_ready, writer_setup,
};
use super::watchers::{Batch, PoolHandle, Watch};
use super::{CONNECT_TIMEOUT, JOIN_TIMEOUT};

/// The channel every message goes to.
pub const CHANNEL: &[u8] = b"px";
/// Bytes per message, as in the Redis measurements.
pub const PAYLOAD: usize = 16;
/// The padding that fills a message to [`PAYLOAD`] bytes.
const PAD: &[u8; 4] = b"pxch";

/// The message for placement `k` of writer `writer`.
pub fn payload(writer: u32, k: u64) -> [u8; PAYLOAD] {
    let mut p = [0u8; PAYLOAD];
    p[..4].copy_from_slice(&writer.to_be_bytes());
    p[4..12].copy_from_slice(&k.to_be_bytes());
    p[12..].copy_from_slice(PAD);
    p
}

/// Reads a message back: (writer, k), or `None` if it is not one of ours.
pub fn parse_payload(p: &[u8]) -> Option<(u32, u64)> {
    if p.len() != PAYLOAD || &p[12..] != PAD {
        return None;
    }
    let writer = u32::from_be_bytes(p[..4].try_into().ok()?);
    let k = u64::from_be_bytes(p[4..12].try_into().ok()?);
    Some((writer, k))
}

async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<TcpStream> {
    let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .context("connect timed out")?
        .with_context(|| format!("connect to Redis on {addr}"))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Connects and subscribes; returns once Redis confirms the subscription.
async fn subscribe(addr: std::net::SocketAddr) -> anyhow::Result<(TcpStream, InBuf)> {
    let mut s = connect(addr).await?;
    let mut cmd = Vec::new();
    resp::encode(&[b"SUBSCRIBE", CHANNEL], &mut cmd);
    s.write_all(&cmd).await?;
    let mut buf = InBuf::new(WATCHER_BUFFER);
    loop {
        let n = s.read(buf.spare(0)).await?;
        if n == 0 {
            bail!("Redis closed the connection before confirming SUBSCRIBE");
        }
        buf.advance(n);
        while let Some((v, used)) = resp::parse(buf.data())? {
            match (v, v.items()) {
                (_, [Scalar::Bulk(Some(b"subscribe")), ..]) => {
                    buf.consume(used);
                    return Ok((s, buf));
                }
                (Resp::Scalar(Scalar::Error(e)), _) => {
                    bail!("Redis answered {}", String::from_utf8_lossy(e))
                }
                _ => buf.consume(used),
            }
        }
    }
}

/// A watcher's Redis stream: the next k expected from each writer.
#[derive(Debug)]
pub(crate) struct RedisWatch {
    next: Vec<u64>,
}

impl Watch for RedisWatch {
    fn on_data(
        &mut self,
        data: &[u8],
        sh: &Shared,
        now: u64,
        h: &mut Tally,
        out: &mut WatcherOutcome,
    ) -> Batch {
        let mut batch = Batch::default();
        loop {
            let (v, used) = match resp::parse(&data[batch.used..]) {
                Ok(Some(x)) => x,
                Ok(None) => return batch,
                Err(e) => {
                    batch.end = Some(End::Failed(e.to_string()));
                    return batch;
                }
            };
            batch.used += used;
            let Some((w, k)) = v.message().and_then(|(_, p)| parse_payload(p)) else {
                continue;
            };
            let w = w as usize;
            let Some(expected) = self.next.get_mut(w) else {
                continue;
            };
            if k < *expected {
                out.out_of_order += 1;
                continue;
            }
            out.lost += k - *expected;
            *expected = k + 1;
            batch.got += 1;
            let (slot, generation) = sh.tables[w].position(k);
            match sh.tables[w].lookup(slot, generation, u64::MAX) {
                Lookup::Sent(sent) => h.record(sent, now),
                Lookup::Unmatched => out.unmatched += 1,
            }
        }
    }

    fn complete(&self, fin: &Final) -> bool {
        self.next.iter().zip(&fin.acked).all(|(n, a)| n >= a)
    }

    fn position(&self) -> Position {
        Position::Next(self.next.clone())
    }
}

/// A Redis watcher's setup: subscribes (at most `gate` at a time), reports
/// ready and hands the connection to the watcher pool. Returns the
/// watcher's outcome when it never got that far.
pub(crate) async fn watcher(
    id: usize,
    sh: Arc<Shared>,
    gate: Arc<Semaphore>,
    ready: mpsc::Sender<Result<(), String>>,
    pool: PoolHandle<RedisWatch>,
) -> Option<WatcherOutcome> {
    let mut out = WatcherOutcome::default();
    let joined = tokio::select! {
        _ = sh.stop.cancelled() => return Some(out),
        j = async {
            let _permit = gate.acquire().await;
            tokio::time::timeout(JOIN_TIMEOUT, subscribe(sh.addr_for(id))).await
        } => j,
    };
    let Some((stream, buf)) = watcher_ready(&sh, id, joined, "subscribe", ready, &mut out).await
    else {
        return Some(out);
    };
    let watch = RedisWatch {
        next: vec![0; sh.tables.len()],
    };
    match pool.add(id, stream, buf.data(), watch) {
        Ok(()) => None,
        Err(e) => {
            out.end = End::Failed(format!("hand over to the watcher pool: {e}"));
            Some(out)
        }
    }
}

/// A Redis writer: connects, waits for the start, publishes, and reads the
/// replies (receiver counts) until the run stops.
pub(crate) async fn writer(
    id: usize,
    sh: Arc<Shared>,
    ready: mpsc::Sender<Result<(), String>>,
    start: watch::Receiver<Option<Instant>>,
) -> Option<WriterRun> {
    let setup = tokio::time::timeout(JOIN_TIMEOUT, connect(sh.addr_for(id))).await;
    let stream = writer_setup(id, "connect", setup, &ready).await?;
    let (rd, wr) = stream.into_split();
    let state = Arc::new(WriterState::new(sh.workload.window));
    let receiver = tokio::spawn(publish_replies(rd, sh.clone(), state.clone()));
    run_writer(id, &sh, ready, start, wr, state, receiver, |k, buf| {
        resp::encode(&[b"PUBLISH", CHANNEL, &payload(id as u32, k)], buf);
    })
    .await
}

/// A Redis writer's reading half: one integer reply per `PUBLISH`.
async fn publish_replies(mut rd: OwnedReadHalf, sh: Arc<Shared>, state: Arc<WriterState>) {
    let mut buf = InBuf::new(4096);
    let mut now = sh.epoch.now_nanos();
    loop {
        let (mut acks, mut rejected, mut fault) = (0u64, 0u64, None);
        loop {
            match resp::parse(buf.data()) {
                Ok(Some((v, used))) => {
                    match v {
                        Resp::Scalar(Scalar::Int(_)) => acks += 1,
                        Resp::Scalar(Scalar::Error(_)) => rejected += 1,
                        _ => {}
                    }
                    buf.consume(used);
                }
                Ok(None) => break,
                Err(e) => {
                    fault = Some(e.to_string());
                    break;
                }
            }
        }
        state.rejected.fetch_add(rejected, Ordering::Relaxed);
        let in_window = if sh.in_window(now) { acks } else { 0 };
        state.answered(&sh, acks + rejected, in_window);
        if let Some(f) = fault {
            return state.fail(f);
        }
        tokio::select! {
            _ = sh.stop.cancelled() => return,
            r = rd.read(buf.spare(0)) => match r {
                Ok(0) => return state.fail("Redis closed the writer's connection".into()),
                Ok(n) => {
                    buf.advance(n);
                    now = sh.epoch.now_nanos();
                }
                Err(e) => return state.fail(format!("read failed: {e}")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_writer_and_placement() {
        let p = payload(7, 1 << 40);
        assert_eq!(p.len(), 16);
        assert_eq!(parse_payload(&p), Some((7, 1 << 40)));
        assert_eq!(parse_payload(&p[..15]), None);
        let mut other = p;
        other[15] = b'x';
        assert_eq!(parse_payload(&other), None);
    }
}
