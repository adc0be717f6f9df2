//! Whatever decodes as a command encodes and decodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pixchat::protocol::binary::roundtrip_command(data);
});
