//! Arbitrary bytes through the server's and the client's frame decoders:
//! no panic, never more buffered than one frame's limit, and the borrowing
//! decoder finds the same frames and messages as the client's codec.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pixchat::protocol::binary::{
    ClientCodec, ServerCodec, ServerMsgRef, decode_server_ref, split_server_frame,
};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut server = ServerCodec::default();
    while let Ok(Some(_)) = server.decode(&mut buf) {}
    let mut buf = BytesMut::from(data);
    let mut client = ClientCodec::default();
    let mut rest = data;
    while let Ok(Some((payload, used))) = split_server_frame(rest) {
        rest = &rest[used..];
        let in_place = decode_server_ref(payload).map(ServerMsgRef::into_owned);
        match client.decode(&mut buf) {
            Ok(Some(msg)) => assert_eq!(in_place, Ok(msg)),
            _ => assert!(in_place.is_err()),
        }
    }
});
