//! pixchat's side of the fan-out workload: joining in binary mode, the
//! watchers' frame handling (the library's decoder, in place), and the
//! writers. The library's [`Connection`] asks a server about its canvas;
//! joins and the hot paths read frames in place instead, because
//! `Connection` unpacks every snapshot and allocates per event, which is
//! right for a client but would make the bench measure itself.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::BytesMut;
use pixchat::client::Connection;
use pixchat::protocol::binary::{
    ServerMsgRef, decode_server_ref, encode_command, event_type, reply_type, split_server_frame,
};
use pixchat::protocol::{Command, PROTOCOL_VERSION, Reply, ServerMsg};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, watch};

use super::frames::{Frame, FrameReader, Keep};
use super::latency::{Lookup, Tally};
use super::shared::{
    End, Final, Position, Shared, WATCHER_BUFFER, WatcherOutcome, WriterRun, WriterState,
    run_writer, watcher_ready, writer_setup,
};
use super::watchers::{Batch, PoolHandle, Watch};
use super::{CONNECT_TIMEOUT, JOIN_TIMEOUT, Servers};

/// The generation bits a pixchat placement carries (its colour).
const PIXCHAT_GEN_MASK: u64 = 0xF;

/// What a watcher answers the server's `KEEPALIVE` with, as the library's
/// client does: a binary watcher that says nothing for the server's idle
/// timeout is dropped, and a run with 20,000 watchers can take longer than
/// that to set up.
static PING: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut out = BytesMut::new();
    encode_command(
        &Command::Ping {
            token: String::new(),
        },
        &mut out,
    );
    out.to_vec()
});

/// A joined pixchat connection.
pub(crate) struct Joined {
    pub stream: TcpStream,
    pub reader: FrameReader,
    /// The seq the snapshot is at: events after it follow.
    pub seq: u64,
    /// Canvas size from the welcome.
    pub width: u16,
    /// Canvas height.
    pub height: u16,
    /// The packed snapshot, when `keep` kept it.
    pub packed: Option<Vec<u8>>,
    /// Bytes received until the snapshot was complete.
    pub bytes: u64,
    /// Bytes sent to join (HELLO and JOIN).
    pub sent: u64,
}

/// Connects in binary mode as connection number `id` (see
/// [`crate::connect`]), says hello and joins as `name`; returns once the
/// welcome and the whole snapshot are in.
pub(crate) async fn join(
    addr: SocketAddr,
    id: usize,
    name: &str,
    keep: Keep,
    buffer: usize,
) -> anyhow::Result<Joined> {
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, crate::connect(addr, id))
        .await
        .context("connect timed out")?
        .context("connect")?;
    stream.set_nodelay(true)?;
    let mut hello = BytesMut::new();
    encode_command(
        &Command::Hello {
            version: PROTOCOL_VERSION,
        },
        &mut hello,
    );
    encode_command(
        &Command::Join {
            name: name.to_string(),
            resume: None,
            quiet: false,
        },
        &mut hello,
    );
    stream.write_all(&hello).await.context("send HELLO, JOIN")?;
    let sent = hello.len() as u64;
    let mut reader = FrameReader::new(buffer, keep);
    let mut welcome = None;
    let mut bytes = 0u64;
    loop {
        let n = stream.read(reader.spare()).await.context("read")?;
        if n == 0 {
            bail!("the server closed the connection while {name} joined");
        }
        bytes += n as u64;
        reader.advance(n);
        while let Some(frame) = reader.next_frame()? {
            let packed = match frame {
                Frame::Msg(ServerMsgRef::Other(msg)) => {
                    if let ServerMsg::Reply(Reply::Welcome(w)) = *msg {
                        welcome = Some((w.seq, w.width, w.height));
                    }
                    continue;
                }
                Frame::Msg(ServerMsgRef::Snapshot(s)) => Some(s.packed.to_vec()),
                Frame::Skipped {
                    kind: reply_type::SNAPSHOT,
                    ..
                } => None,
                Frame::Msg(ServerMsgRef::Error { code, message }) => {
                    bail!("the server answered {code}: {message}")
                }
                Frame::Msg(ServerMsgRef::Bye { code, .. }) => {
                    bail!("the server said BYE {code}")
                }
                _ => continue,
            };
            let Some((seq, width, height)) = welcome else {
                bail!("a snapshot before the welcome");
            };
            return Ok(Joined {
                stream,
                reader,
                seq,
                width,
                height,
                packed,
                bytes,
                sent,
            });
        }
    }
}

/// What a pixchat server says about its canvas before anyone joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CanvasInfo {
    pub id: u64,
    pub width: u16,
    pub height: u16,
}

/// Asks a pixchat server for its canvas (the client library's `HELLO`,
/// then closes).
pub(crate) async fn probe_canvas(addr: SocketAddr) -> anyhow::Result<CanvasInfo> {
    let conn = tokio::time::timeout(CONNECT_TIMEOUT * 2, Connection::connect(addr))
        .await
        .context("no HELLO_OK in time")?
        .with_context(|| format!("is a pixchat server listening on {addr}?"))?;
    let h = conn.hello();
    Ok(CanvasInfo {
        id: h.canvas_id,
        width: h.width,
        height: h.height,
    })
}

/// Checks that several pixchat servers share one canvas (the same id and
/// size from each), as servers in cluster mode on one Redis and prefix do;
/// returns it. Servers that do not share one would each number their own
/// events, and every watcher would seem to lose the others'.
pub(crate) async fn probe_shared_canvas(servers: &Servers) -> anyhow::Result<CanvasInfo> {
    let first = probe_canvas(servers.first()).await?;
    for ep in &servers.endpoints[1..] {
        let other = probe_canvas(ep.addr).await?;
        if other != first {
            bail!(
                "the servers on {} and {} do not share one canvas (canvas {:#x} {}x{} vs {:#x} {}x{}); \
                 start them with the same --redis URL and --redis-prefix",
                servers.first(),
                ep.addr,
                first.id,
                first.width,
                first.height,
                other.id,
                other.width,
                other.height
            );
        }
    }
    Ok(first)
}

/// A watcher's pixchat stream: the last seq it got.
#[derive(Debug)]
pub(crate) struct PixchatWatch {
    last: u64,
}

impl PixchatWatch {
    pub(crate) fn new(last: u64) -> Self {
        Self { last }
    }
}

impl Watch for PixchatWatch {
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
            if let Some((p, used)) = pixel_in_place(&data[batch.used..]) {
                batch.used += used;
                batch.got += on_pixel(sh, out, &mut self.last, &p, now, h);
                continue;
            }
            let (payload, used) = match split_server_frame(&data[batch.used..]) {
                Ok(Some(frame)) => frame,
                Ok(None) => return batch,
                Err(e) => {
                    batch.end = Some(End::Failed(e.to_string()));
                    return batch;
                }
            };
            batch.used += used;
            match decode_server_ref(payload) {
                Ok(ServerMsgRef::Pixel(p)) => {
                    let p = Pixel {
                        seq: p.seq,
                        x: p.x,
                        y: p.y,
                        color: p.color,
                        name: p.name.as_bytes(),
                    };
                    batch.got += on_pixel(sh, out, &mut self.last, &p, now, h)
                }
                Ok(ServerMsgRef::Bye { code, .. }) => {
                    batch.end = Some(End::Bye(code.as_str().to_string()));
                    return batch;
                }
                Ok(ServerMsgRef::Keepalive) => batch.reply = Some(&PING),
                Ok(_) => {}
                Err(e) => {
                    batch.end = Some(End::Failed(format!("malformed message: {e}")));
                    return batch;
                }
            }
        }
    }

    fn complete(&self, fin: &Final) -> bool {
        self.last >= fin.seq
    }

    fn position(&self) -> Position {
        Position::Seq(self.last)
    }
}

/// A `PIXEL` event as the watchers need it: the placer's name as bytes,
/// compared with the writers' names, never read as text.
struct Pixel<'a> {
    seq: u64,
    x: u16,
    y: u16,
    color: u8,
    name: &'a [u8],
}

/// The `PIXEL` frame at the start of `buf`, read in place, and the bytes
/// it takes; `None` for anything else (another message, a frame not yet
/// whole, a malformed one), which the general decoder then handles.
///
/// Hand-written for speed: a watcher thread reads tens of millions of these
/// a second, and the library's decoder (an enum of every message, the name
/// checked as UTF-8) cost half of its CPU.
fn pixel_in_place(buf: &[u8]) -> Option<(Pixel<'_>, usize)> {
    // length:u32 type:u8 seq:u64 x:u16 y:u16 color:u8 name_len:u8 name
    let (head, rest) = buf.split_first_chunk::<19>()?;
    let [
        l0,
        l1,
        l2,
        l3,
        kind,
        s0,
        s1,
        s2,
        s3,
        s4,
        s5,
        s6,
        s7,
        x0,
        x1,
        y0,
        y1,
        color,
        name_len,
    ] = *head;
    let name_len = usize::from(name_len);
    if kind != event_type::PIXEL || u32::from_be_bytes([l0, l1, l2, l3]) as usize != 15 + name_len {
        return None;
    }
    let name = rest.get(..name_len)?;
    let pixel = Pixel {
        seq: u64::from_be_bytes([s0, s1, s2, s3, s4, s5, s6, s7]),
        x: u16::from_be_bytes([x0, x1]),
        y: u16::from_be_bytes([y0, y1]),
        color,
        name,
    };
    Some((pixel, 19 + name_len))
}

/// Counts one pixel event and records its latency; returns 1 if it was a
/// new event, 0 for a repeat or one out of order.
fn on_pixel(
    sh: &Shared,
    out: &mut WatcherOutcome,
    last: &mut u64,
    p: &Pixel<'_>,
    now: u64,
    h: &mut Tally,
) -> u64 {
    if p.seq <= *last {
        out.out_of_order += 1;
        return 0;
    }
    out.lost += p.seq - *last - 1;
    *last = p.seq;
    if let Some(w) = sh.writer_of(p.name) {
        let slot = u64::from(p.y) * sh.width + u64::from(p.x);
        match sh.tables[w].lookup(slot, u64::from(p.color), PIXCHAT_GEN_MASK) {
            Lookup::Sent(sent) => h.record(sent, now),
            Lookup::Unmatched => out.unmatched += 1,
        }
    }
    1
}

/// A pixchat watcher's setup: joins (at most `gate` at a time), reports
/// ready and hands the connection to the watcher pool. Returns the
/// watcher's outcome when it never got that far.
pub(crate) async fn watcher(
    id: usize,
    sh: Arc<Shared>,
    gate: Arc<Semaphore>,
    ready: mpsc::Sender<Result<(), String>>,
    pool: PoolHandle<PixchatWatch>,
) -> Option<WatcherOutcome> {
    let mut out = WatcherOutcome::default();
    let joined = tokio::select! {
        _ = sh.stop.cancelled() => return Some(out),
        j = async {
            let _permit = gate.acquire().await;
            tokio::time::timeout(
                JOIN_TIMEOUT,
                join(sh.addr_for(id), id, &sh.watcher_name(id), Keep::SkipBigSnapshots, WATCHER_BUFFER),
            )
            .await
        } => j,
    };
    let Some(joined) = watcher_ready(&sh, id, joined, "join", ready, &mut out).await else {
        return Some(out);
    };
    let watch = PixchatWatch::new(joined.seq);
    match pool.add(id, joined.stream, joined.reader.unparsed(), watch) {
        Ok(()) => None,
        Err(e) => {
            out.end = End::Failed(format!("hand over to the watcher pool: {e}"));
            out.position = Position::Seq(joined.seq);
            Some(out)
        }
    }
}

/// A pixchat writer: joins, waits for the start, places pixels, and keeps
/// reading (acknowledgements, and the events it receives like everyone)
/// until the run stops.
pub(crate) async fn writer(
    id: usize,
    sh: Arc<Shared>,
    ready: mpsc::Sender<Result<(), String>>,
    start: watch::Receiver<Option<Instant>>,
) -> Option<WriterRun> {
    let joined = tokio::time::timeout(
        JOIN_TIMEOUT,
        join(
            sh.addr_for(id),
            // After the watchers, for the source address.
            sh.workload.clients + id,
            &sh.writer_name(id),
            Keep::SkipBigSnapshots,
            WATCHER_BUFFER,
        ),
    )
    .await;
    let joined = writer_setup(id, "join", joined, &ready).await?;
    let (rd, wr) = joined.stream.into_split();
    let state = Arc::new(WriterState::new(sh.workload.window));
    let receiver = tokio::spawn(writer_acks(rd, joined.reader, sh.clone(), state.clone()));
    let (slots, width) = (sh.slots, sh.width);
    run_writer(id, &sh, ready, start, wr, state, receiver, |k, buf| {
        let s = k % slots;
        let set = Command::Set {
            x: (s % width) as u32,
            y: (s / width) as u32,
            color: ((k / slots) % 16) as u32,
        };
        encode_command(&set, buf);
    })
    .await
}

/// A pixchat writer's reading half: counts `SET_OK` and `ERROR` replies and
/// gives their places back to the window; reads past everything else.
async fn writer_acks(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    mut reader: FrameReader,
    sh: Arc<Shared>,
    state: Arc<WriterState>,
) {
    let mut now = sh.epoch.now_nanos();
    loop {
        let (mut acks, mut rejected, mut max_seq) = (0u64, 0u64, 0u64);
        let mut end = None;
        loop {
            match reader.next_frame() {
                Ok(Some(Frame::Msg(ServerMsgRef::SetOk { seq }))) => {
                    acks += 1;
                    max_seq = max_seq.max(seq);
                }
                Ok(Some(Frame::Msg(ServerMsgRef::Error { .. }))) => rejected += 1,
                Ok(Some(Frame::Msg(ServerMsgRef::Bye { code, .. }))) => {
                    end = Some(format!("BYE {code}"));
                    break;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    end = Some(e.to_string());
                    break;
                }
            }
        }
        state.max_seq.fetch_max(max_seq, Ordering::Relaxed);
        state.rejected.fetch_add(rejected, Ordering::Relaxed);
        let in_window = if sh.in_window(now) { acks } else { 0 };
        state.answered(&sh, acks + rejected, in_window);
        if let Some(why) = end {
            state.fail(why);
            return;
        }
        tokio::select! {
            _ = sh.stop.cancelled() => return,
            r = rd.read(reader.spare()) => match r {
                Ok(0) => return state.fail("the server closed the writer's connection".into()),
                Ok(n) => {
                    reader.advance(n);
                    now = sh.epoch.now_nanos();
                }
                Err(e) => return state.fail(format!("read failed: {e}")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::BytesMut;
    use pixchat::protocol::binary::{decode_server_ref, encode_event, split_server_frame};
    use pixchat::protocol::{Event, Pixel as Placed};

    use super::*;

    fn encoded(event: &Event) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_event(event, &mut out);
        out.to_vec()
    }

    #[test]
    fn a_pixel_read_in_place_is_what_the_library_decodes() {
        for name in ["w1a2b-0", "", "a name of some length, all of it bytes"] {
            let event = Event::Pixel(Placed {
                seq: 0x0102_0304_0506_0708,
                x: 1023,
                y: 513,
                color: 15,
                name: Arc::from(name),
            });
            let mut bytes = encoded(&event);
            let frame_len = bytes.len();
            bytes.extend_from_slice(&encoded(&event)); // the next frame after it
            let (p, used) = pixel_in_place(&bytes).expect("a pixel");
            let (payload, len) = split_server_frame(&bytes).unwrap().unwrap();
            let Ok(ServerMsgRef::Pixel(lib)) = decode_server_ref(payload) else {
                panic!("the library decodes a pixel");
            };
            assert_eq!((used, len), (frame_len, frame_len));
            assert_eq!(
                (p.seq, p.x, p.y, p.color, p.name),
                (lib.seq, lib.x, lib.y, lib.color, lib.name.as_bytes())
            );
        }
    }

    #[test]
    fn anything_but_a_whole_pixel_is_left_to_the_library() {
        let pixel = encoded(&Event::Pixel(Placed {
            seq: 9,
            x: 1,
            y: 2,
            color: 3,
            name: Arc::from("w1a2b-0"),
        }));
        for cut in 0..pixel.len() {
            assert!(pixel_in_place(&pixel[..cut]).is_none(), "cut at {cut}");
        }
        let joined = encoded(&Event::Joined {
            name: Arc::from("a name long enough for the head"),
        });
        assert!(pixel_in_place(&joined).is_none());
        // A length prefix that disagrees with the name's length.
        let mut lying = pixel.clone();
        lying[3] += 1;
        lying.push(0);
        assert!(pixel_in_place(&lying).is_none());
    }
}
