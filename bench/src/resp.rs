//! Just enough RESP2 for `SUBSCRIBE`, `PUBLISH` and `PING`, read in place.
//!
//! Hand-written instead of the `redis` crate on purpose: its pub/sub API
//! builds a `Msg` with owned buffers for every message, so a subscriber
//! receiving millions of messages per second would spend its time in the
//! allocator and the Redis side of the comparison would measure the client.
//! Here a pushed message is parsed where it lies in the read buffer, exactly
//! as the pixchat watchers parse `PIXEL` frames.

use bytes::BufMut;

/// Most elements an array may have here (a pushed message has three).
pub const MAX_ITEMS: usize = 4;
/// Longest bulk string accepted (our payloads are 16 bytes; replies are short).
pub const MAX_BULK: usize = 1 << 20;
/// Longest header line (`$123\r\n`, `:5\r\n`, `+PONG\r\n`, an error text).
const MAX_LINE: usize = 4096;

/// One non-array RESP value, borrowed from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar<'a> {
    /// `+text`
    Simple(&'a [u8]),
    /// `-text`
    Error(&'a [u8]),
    /// `:n`
    Int(i64),
    /// `$n` bytes, or `$-1` (none).
    Bulk(Option<&'a [u8]>),
}

/// One top-level RESP value: a scalar or a flat array of scalars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resp<'a> {
    /// A scalar.
    Scalar(Scalar<'a>),
    /// An array of up to [`MAX_ITEMS`] scalars.
    Array {
        /// The elements; only the first `len` are meaningful.
        items: [Scalar<'a>; MAX_ITEMS],
        /// Number of elements.
        len: usize,
    },
}

impl<'a> Resp<'a> {
    /// The elements of an array (empty for a scalar).
    pub fn items(&self) -> &[Scalar<'a>] {
        match self {
            Resp::Array { items, len } => &items[..*len],
            Resp::Scalar(_) => &[],
        }
    }

    /// For a pushed `message` on a channel: the channel and the payload.
    pub fn message(&self) -> Option<(&'a [u8], &'a [u8])> {
        match self.items() {
            [
                Scalar::Bulk(Some(b"message")),
                Scalar::Bulk(Some(channel)),
                Scalar::Bulk(Some(payload)),
            ] => Some((channel, payload)),
            _ => None,
        }
    }
}

/// A reply stream the bench cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespFault {
    /// Not RESP, or a kind this reader does not support.
    #[error("unexpected RESP from the server: {0}")]
    Unexpected(&'static str),
}

/// Finds the `\r\n`-ended line at the start of `data`: its content and the
/// offset after the `\n`.
fn line(data: &[u8]) -> Result<Option<(&[u8], usize)>, RespFault> {
    let window = &data[..data.len().min(MAX_LINE + 2)];
    match window.iter().position(|&b| b == b'\r') {
        Some(i) if i + 1 < data.len() => {
            if data[i + 1] != b'\n' {
                return Err(RespFault::Unexpected("a line with a bare \\r"));
            }
            Ok(Some((&data[..i], i + 2)))
        }
        Some(_) => Ok(None),
        None if window.len() > MAX_LINE => Err(RespFault::Unexpected("a line too long")),
        None => Ok(None),
    }
}

fn int(digits: &[u8]) -> Result<i64, RespFault> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(RespFault::Unexpected("a bad number"))
}

/// Parses one scalar at the start of `data`: the value and the bytes used.
fn scalar(data: &[u8]) -> Result<Option<(Scalar<'_>, usize)>, RespFault> {
    let Some(&kind) = data.first() else {
        return Ok(None);
    };
    let Some((text, used)) = line(&data[1..])? else {
        return Ok(None);
    };
    let used = used + 1;
    let value = match kind {
        b'+' => Scalar::Simple(text),
        b'-' => Scalar::Error(text),
        b':' => Scalar::Int(int(text)?),
        b'$' => {
            let n = int(text)?;
            if n < 0 {
                Scalar::Bulk(None)
            } else if n as usize > MAX_BULK {
                return Err(RespFault::Unexpected("a bulk string too long"));
            } else {
                let n = n as usize;
                let Some(body) = data.get(used..used + n + 2) else {
                    return Ok(None);
                };
                if &body[n..] != b"\r\n" {
                    return Err(RespFault::Unexpected("a bulk string without \\r\\n"));
                }
                return Ok(Some((Scalar::Bulk(Some(&body[..n])), used + n + 2)));
            }
        }
        b'*' => return Err(RespFault::Unexpected("a nested array")),
        _ => return Err(RespFault::Unexpected("an unknown type byte")),
    };
    Ok(Some((value, used)))
}

/// Parses one value at the start of `data`: the value and the bytes used, or
/// `None` until more bytes arrive.
pub fn parse(data: &[u8]) -> Result<Option<(Resp<'_>, usize)>, RespFault> {
    if data.first() != Some(&b'*') {
        return Ok(scalar(data)?.map(|(s, used)| (Resp::Scalar(s), used)));
    }
    let Some((text, mut used)) = line(&data[1..])? else {
        return Ok(None);
    };
    used += 1;
    let n = int(text)?;
    if !(0..=MAX_ITEMS as i64).contains(&n) {
        return Err(RespFault::Unexpected("an array of an unsupported size"));
    }
    let mut items = [Scalar::Bulk(None); MAX_ITEMS];
    for item in items.iter_mut().take(n as usize) {
        let Some((value, n)) = scalar(&data[used..])? else {
            return Ok(None);
        };
        *item = value;
        used += n;
    }
    Ok(Some((
        Resp::Array {
            items,
            len: n as usize,
        },
        used,
    )))
}

/// Appends a command as a RESP array of bulk strings (no allocation: the
/// writers encode one per placement).
pub fn encode(args: &[&[u8]], out: &mut impl BufMut) {
    out.put_u8(b'*');
    put_decimal(args.len(), out);
    out.put_slice(b"\r\n");
    for a in args {
        out.put_u8(b'$');
        put_decimal(a.len(), out);
        out.put_slice(b"\r\n");
        out.put_slice(a);
        out.put_slice(b"\r\n");
    }
}

/// Appends `n` in decimal.
fn put_decimal(mut n: usize, out: &mut impl BufMut) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::inbuf::InBuf;

    const SUBSCRIBED: &[u8] = b"*3\r\n$9\r\nsubscribe\r\n$2\r\npx\r\n:1\r\n";

    fn message(payload: &[u8]) -> Vec<u8> {
        let mut m = b"*3\r\n$7\r\nmessage\r\n$2\r\npx\r\n$".to_vec();
        m.extend_from_slice(payload.len().to_string().as_bytes());
        m.extend_from_slice(b"\r\n");
        m.extend_from_slice(payload);
        m.extend_from_slice(b"\r\n");
        m
    }

    #[test]
    fn reads_what_redis_sends_a_subscriber_and_a_publisher() {
        let (v, used) = parse(SUBSCRIBED).unwrap().unwrap();
        assert_eq!(used, SUBSCRIBED.len());
        assert_eq!(
            v.items(),
            &[
                Scalar::Bulk(Some(b"subscribe")),
                Scalar::Bulk(Some(b"px")),
                Scalar::Int(1)
            ]
        );
        // A binary payload may contain \r\n: bulk strings go by length.
        let payload = *b"\0\0\0\x01\r\n\0\0\0\0\0\x05pxch";
        let m = message(&payload);
        let (v, used) = parse(&m).unwrap().unwrap();
        assert_eq!(used, m.len());
        assert_eq!(v.message(), Some((&b"px"[..], &payload[..])));
        assert_eq!(
            parse(b":1000\r\n").unwrap(),
            Some((Resp::Scalar(Scalar::Int(1000)), 7))
        );
        assert_eq!(
            parse(b"+PONG\r\n").unwrap(),
            Some((Resp::Scalar(Scalar::Simple(b"PONG")), 7))
        );
        assert_eq!(
            parse(b"-ERR max clients\r\n").unwrap(),
            Some((Resp::Scalar(Scalar::Error(b"ERR max clients")), 18))
        );
        assert_eq!(
            parse(b"$-1\r\n").unwrap(),
            Some((Resp::Scalar(Scalar::Bulk(None)), 5))
        );
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let m = message(b"0123456789abcdef");
        for cut in 0..m.len() {
            assert_eq!(parse(&m[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        assert!(parse(b"*9\r\n").is_err());
        assert!(parse(b"*1\r\n*1\r\n:1\r\n").is_err());
        assert!(parse(b"$3\r\nabcXY").is_err());
        assert!(parse(b"?x\r\n").is_err());
        assert!(parse(b":12x\r\n").is_err());
        assert!(parse(&[b'+'; MAX_LINE + 10]).is_err());
    }

    #[test]
    fn encodes_a_publish() {
        let mut out = Vec::new();
        encode(&[b"PUBLISH", b"px", b"ab"], &mut out);
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$2\r\npx\r\n$2\r\nab\r\n");
        let mut out = Vec::new();
        encode(&[&[b'x'; 1234][..]], &mut out);
        assert!(out.starts_with(b"*1\r\n$1234\r\nxxx"));
        let mut out = Vec::new();
        encode(&[b""], &mut out);
        assert_eq!(out, b"*1\r\n$0\r\n\r\n");
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_messages(
            cuts in proptest::collection::vec(0usize..2_000, 0..30),
            cap in 64usize..512,
        ) {
            let mut bytes = SUBSCRIBED.to_vec();
            for i in 0..40u64 {
                let mut p = [0u8; 16];
                p[4..12].copy_from_slice(&i.to_be_bytes());
                bytes.extend_from_slice(&message(&p));
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            points.push(bytes.len());
            points.sort_unstable();
            let mut buf = InBuf::new(cap);
            let (mut at, mut seen) = (0, Vec::new());
            for end in points {
                while at < end {
                    let spare = buf.spare(0);
                    let n = spare.len().min(end - at);
                    spare[..n].copy_from_slice(&bytes[at..at + n]);
                    buf.advance(n);
                    at += n;
                    while let Some((v, used)) = parse(buf.data()).unwrap() {
                        if let Some((_, p)) = v.message() {
                            seen.push(u64::from_be_bytes(p[4..12].try_into().unwrap()));
                        }
                        buf.consume(used);
                    }
                }
            }
            prop_assert_eq!(seen, (0..40).collect::<Vec<_>>());
        }
    }
}
