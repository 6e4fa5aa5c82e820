//! The d-zone message decoder on arbitrary text: it must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        d_back::fuzzing::decode_client_frame(text);
    }
});
