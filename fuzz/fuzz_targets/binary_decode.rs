//! Arbitrary bytes through the server's and the client's frame decoders:
//! no panic, and never more buffered than one frame's limit.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pixchat::protocol::binary::{ClientCodec, ServerCodec};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut server = ServerCodec::default();
    while let Ok(Some(_)) = server.decode(&mut buf) {}
    let mut buf = BytesMut::from(data);
    let mut client = ClientCodec::default();
    while let Ok(Some(_)) = client.decode(&mut buf) {}
});
