//! The data file parser (TOML and JSON) on arbitrary text: it must never panic,
//! and every refusal says something.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if let Err(message) = d_back::fuzzing::parse_data_file(text, kind % 2 == 0) {
        assert!(!message.is_empty());
    }
});
