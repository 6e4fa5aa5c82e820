//! Short, bounded fuzzing of every parser a stranger reaches with bytes of
//! their choosing, in the normal test run: the WebSocket frame reader, the
//! d-zone message decoder, static path resolution, the data file parser and
//! the ingest API's bodies. Inputs are valid examples mutated at random (and
//! plain noise); each target runs a few thousand cases.
//!
//! The seed is printed, and `FUZZ_SEED=<n>` replays a run. Longer runs with
//! coverage guidance are `scripts/fuzz.sh` (cargo-fuzz); what they find is
//! kept below as regression inputs.

mod common;

use std::time::Duration;

use common::*;
use d_back::fuzzing;
use d_back::provider::Store;
use d_back::{MockWorld, Server};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// Cases per target: enough to shake out the shallow bugs in a second or two.
const CASES: usize = 3000;

fn rng(target: &str) -> StdRng {
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().next_u64());
    println!("{target}: FUZZ_SEED={seed}");
    StdRng::seed_from_u64(seed)
}

/// Bytes that parsers treat specially.
const INTERESTING: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"null",
    b"true",
    b"1e999",
    b"-0",
    b"\\u0000",
    b"\\ud800",
    b"\xff",
    b"\xc3",
    b"\x00",
    b"..",
    b"%2e",
    b"%2f",
    b"/",
    b"\\",
    b"=",
    b"\n",
    b"[[servers]]",
    b"type",
    b"connect",
    b"data",
    b"server",
    b"\x80\x81\x82\x83",
];

/// A mutation of `seed`: flipped, inserted, deleted, duplicated or spliced bytes.
fn mutate(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..rng.random_range(1..6) {
        let at = if data.is_empty() {
            0
        } else {
            rng.random_range(0..=data.len())
        };
        match rng.random_range(0..6) {
            0 if at < data.len() => data[at] ^= 1 << rng.random_range(0..8),
            1 => {
                let piece = INTERESTING[rng.random_range(0..INTERESTING.len())];
                data.splice(at..at, piece.iter().copied());
            }
            2 if at < data.len() => {
                let end = (at + rng.random_range(1..16)).min(data.len());
                data.drain(at..end);
            }
            3 if at < data.len() => {
                let end = (at + rng.random_range(1..32)).min(data.len());
                let copy: Vec<u8> = data[at..end].to_vec();
                data.splice(at..at, copy);
            }
            4 => data.truncate(at),
            _ => data.insert(at.min(data.len()), rng.random()),
        }
    }
    data
}

fn noise(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let mut bytes = vec![0; rng.random_range(0..max)];
    rng.fill_bytes(&mut bytes);
    bytes
}

/// A client frame, masked, with the given first byte and payload.
fn client_frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Reads every message out of `input`; panics if the reader misbehaves.
async fn read_all_frames(input: &[u8], limit: usize) {
    let mut reader = edge::ws::Reader::new(input, limit);
    for _ in 0..=input.len() {
        match reader.next().await {
            Ok(edge::ws::Incoming::Text(text)) => assert!(text.len() <= limit),
            Ok(edge::ws::Incoming::Binary(bytes)) => assert!(bytes.len() <= limit),
            Ok(_) => {}
            Err(_) => return,
        }
    }
    panic!("the reader returned more messages than there were bytes");
}

#[tokio::test]
async fn fuzz_the_websocket_frame_reader() {
    let mut rng = rng("frame reader");
    let seeds: Vec<Vec<u8>> = vec![
        client_frame(
            0x81,
            br#"{"type":"connect","data":{"server":"dworld"}}"#,
            [1, 2, 3, 4],
        ),
        [
            client_frame(0x01, b"hel", [9, 9, 9, 9]),
            client_frame(0x89, b"ping", [0, 0, 0, 0]),
            client_frame(0x80, b"lo", [7, 7, 7, 7]),
        ]
        .concat(),
        client_frame(0x88, &[0x03, 0xe8, b'o', b'k'], [5, 6, 7, 8]),
        client_frame(0x82, &[0xce, 0xba, 0xe1, 0xbd, 0xb9], [0, 1, 0, 1]),
        client_frame(0x81, &[b'x'; 300], [3, 3, 3, 3]),
    ];
    for case in 0..CASES {
        let input = if case % 5 == 0 {
            noise(&mut rng, 200)
        } else {
            let seed = &seeds[rng.random_range(0..seeds.len())];
            mutate(&mut rng, seed)
        };
        read_all_frames(&input, 256).await;
    }
    for regression in REGRESSIONS_FRAME_READER {
        read_all_frames(regression, 256).await;
    }
}

/// Inputs the longer fuzz runs found or that once mattered; kept so they stay fixed.
const REGRESSIONS_FRAME_READER: &[&[u8]] = &[
    // A 64-bit length of u64::MAX.
    b"\x81\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00",
    // A close frame of one byte.
    b"\x88\x81\x00\x00\x00\x00\x03",
    // A continuation with nothing to continue, then noise.
    b"\x80\x80\x00\x00\x00\x00\xff\xff",
];

#[test]
fn fuzz_the_d_zone_message_decoder() {
    let mut rng = rng("message decoder");
    let seeds: &[&[u8]] = &[
        br#"{"type":"connect","data":{"server":"dworld"}}"#,
        br#"{"type":"connect","data":{"server":"oauth","discordToken":"t","discordUser":{"id":"1","username":"n"}}}"#,
        br#"{"type":"connect","data":"repos"}"#,
        br#"{"type":"connect","data":{"server":null,"password":"p"}}"#,
        br#"{"type":"hello"}"#,
    ];
    for case in 0..CASES * 3 {
        let input = if case % 7 == 0 {
            noise(&mut rng, 100)
        } else {
            let seed = seeds[rng.random_range(0..seeds.len())];
            mutate(&mut rng, seed)
        };
        fuzzing::decode_client_frame(&String::from_utf8_lossy(&input));
    }
    // Deep nesting is refused, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(!fuzzing::decode_client_frame(&deep));
    let deep_data = format!(
        r#"{{"type":"connect","data":{}1{}}}"#,
        "{\"a\":".repeat(50_000),
        "}".repeat(50_000)
    );
    fuzzing::decode_client_frame(&deep_data);
}

#[tokio::test]
async fn fuzz_static_paths_never_leave_the_directory() {
    let mut rng = rng("static paths");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("site");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("index.html"), "<p>hello</p>").unwrap();
    std::fs::write(root.join("sub/page.html"), "<p>page</p>").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "TOP-SECRET").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(dir.path(), root.join("escape")).unwrap();
    let server = start(
        Server::builder()
            .provider(MockWorld::new().with_cadence(Duration::ZERO, Duration::ZERO))
            .static_dir(&root),
    )
    .await;
    let pieces = [
        "..",
        ".",
        "%2e%2e",
        "%2E.",
        ".%2e",
        "%2f",
        "%5c",
        "\\",
        "sub",
        "index.html",
        "secret.txt",
        "link.txt",
        "escape",
        "%00",
        "%c0%ae",
        "%252e",
        "//",
        "~",
        "page.html",
        "%",
        "%zz",
    ];
    let mut checked = 0;
    for _ in 0..300 {
        let mut path = String::new();
        for _ in 0..rng.random_range(1..7) {
            path.push('/');
            path.push_str(pieces[rng.random_range(0..pieces.len())]);
        }
        let answer = http(server.local_addr(), "GET", &path).await;
        assert!(
            !answer.text().contains("TOP-SECRET"),
            "{path} leaked the secret"
        );
        assert!(answer.status < 500, "{path}: {}", answer.status);
        checked += 1;
    }
    assert_eq!(checked, 300);
    assert_eq!(
        http(server.local_addr(), "GET", "/sub/page.html")
            .await
            .status,
        200
    );
    let real_root = std::fs::canonicalize(&root).unwrap();
    for (path, inside) in [
        ("/sub/page.html", true),
        ("/link.txt", false),
        ("/escape/secret.txt", false),
        ("/%2e%2e/secret.txt", false),
        ("/sub/..%2f..%2fsecret.txt", false),
    ] {
        assert_eq!(
            fuzzing::static_path_stays_inside(&real_root, path).await,
            inside,
            "{path}"
        );
    }
    server.shutdown().await;
}

#[test]
fn fuzz_the_data_file_parser() {
    let mut rng = rng("data file");
    let toml = include_bytes!("../examples/world.toml");
    let json = include_bytes!("../examples/world.json");
    assert!(fuzzing::parse_data_file(std::str::from_utf8(toml).unwrap(), true).is_ok());
    for case in 0..CASES / 3 {
        let is_toml = case % 2 == 0;
        let seed: &[u8] = if is_toml { toml } else { json };
        let input = mutate(&mut rng, seed);
        let text = String::from_utf8_lossy(&input);
        if let Err(message) = fuzzing::parse_data_file(&text, is_toml) {
            assert!(!message.is_empty());
        }
    }
}

#[tokio::test]
async fn fuzz_the_ingest_api_bodies() {
    let mut rng = rng("ingest bodies");
    let store = Store::new();
    let guild = "555000000000000001";
    let setup = format!(r#"{{"{guild}":{{"id":"lobby","name":"Lobby"}}}}"#);
    let status =
        fuzzing::ingest_request(&store, "PUT", "/api/ingest/servers", setup.into_bytes()).await;
    assert_eq!(status, 200);
    let users_path = format!("/api/ingest/servers/{guild}/users");
    let presence_path = format!("/api/ingest/servers/{guild}/presence");
    let messages_path = format!("/api/ingest/servers/{guild}/messages");
    let endpoints: Vec<(&str, &str, &[u8])> = vec![
        ("PUT", "/api/ingest/servers", br#"{"555000000000000001":{"id":"lobby","name":"Lobby","passworded":false,"default":true}}"#),
        ("PUT", &users_path, br##"[{"uid":"1","username":"ada","status":"online","roleColor":"#ff0000"}]"##),
        ("POST", &presence_path, br#"{"uid":"1","status":"dnd","username":"ada"}"#),
        ("POST", &messages_path, br#"{"uid":"1","message":"hi","channel":"c"}"#),
        ("PUT", "/api/ingest/client-id", br#"{"server":"555000000000000001","clientId":"42"}"#),
    ];
    for case in 0..CASES / 3 {
        let (method, path, seed) = endpoints[case % endpoints.len()];
        let body = if case % 9 == 0 {
            noise(&mut rng, 300)
        } else {
            mutate(&mut rng, seed)
        };
        let status = fuzzing::ingest_request(&store, method, path, body.clone()).await;
        assert!(
            status.is_success() || status.is_client_error(),
            "{method} {path} {:?} answered {status}",
            String::from_utf8_lossy(&body)
        );
    }
}
