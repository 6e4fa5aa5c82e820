//! The ingest API on arbitrary bodies, sent to each endpoint in process: every
//! answer is a success or a client error, never a server error or a panic.
#![no_main]

use std::sync::OnceLock;

use d_back::provider::Store;
use libfuzzer_sys::fuzz_target;

struct Api {
    runtime: tokio::runtime::Runtime,
    store: Store,
}

fn api() -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    API.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = Store::new();
        let servers = br#"{"555000000000000001":{"id":"lobby","name":"Lobby"}}"#.to_vec();
        runtime.block_on(d_back::fuzzing::ingest_request(
            &store,
            "PUT",
            "/api/ingest/servers",
            servers,
        ));
        Api { runtime, store }
    })
}

const ENDPOINTS: &[(&str, &str)] = &[
    ("PUT", "/api/ingest/servers"),
    ("PUT", "/api/ingest/servers/555000000000000001/users"),
    ("POST", "/api/ingest/servers/555000000000000001/presence"),
    ("POST", "/api/ingest/servers/555000000000000001/messages"),
    ("PUT", "/api/ingest/client-id"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let (method, path) = ENDPOINTS[usize::from(which) % ENDPOINTS.len()];
    let api = api();
    let status = api.runtime.block_on(d_back::fuzzing::ingest_request(
        &api.store,
        method,
        path,
        body.to_vec(),
    ));
    assert!(
        status.is_success() || status.is_client_error(),
        "{method} {path} answered {status}"
    );
});
