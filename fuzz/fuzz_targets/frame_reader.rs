//! The WebSocket frame reader on arbitrary client bytes: it must never panic,
//! never return a message over its limit, and always make progress.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 1024;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(async {
        let mut reader = edge::ws::Reader::new(data, LIMIT);
        for _ in 0..=data.len() {
            match reader.next().await {
                Ok(edge::ws::Incoming::Text(text)) => assert!(text.len() <= LIMIT),
                Ok(edge::ws::Incoming::Binary(bytes)) => assert!(bytes.len() <= LIMIT),
                Ok(_) => {}
                Err(_) => return,
            }
        }
        panic!("more messages than bytes");
    });
});
