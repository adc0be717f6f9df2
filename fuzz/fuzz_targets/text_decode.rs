//! Arbitrary bytes as text-mode input, to the line codec and to the telnet
//! filter the server puts in front of it: no panic, and the line buffer
//! stays within the line limit.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pixchat::protocol::{MAX_LINE, telnet::TextCodec, text::LineCodec};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut codec = LineCodec::new();
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = codec.decode(&mut buf) {}
    assert!(buf.len() <= MAX_LINE + 1);
    while let Ok(Some(_)) = codec.decode_eof(&mut buf) {}

    let mut codec = TextCodec::new();
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = codec.decode(&mut buf) {}
    assert!(buf.len() <= MAX_LINE + 1);
    while let Ok(Some(_)) = codec.decode_eof(&mut buf) {}
});
