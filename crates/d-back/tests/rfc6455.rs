//! An RFC 6455 conformance suite against the real server, over raw sockets,
//! grouped like the Autobahn test suite's categories: framing and lengths,
//! ping/pong, reserved bits, opcodes, fragmentation, UTF-8, close handling,
//! limits, the opening handshake, and garbage.
//!
//! The client here is written byte by byte on purpose: a WebSocket library
//! would refuse to send most of these frames.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use d_back::{MockWorld, RunningServer, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

const CONNECT: &[u8] = br#"{"type":"connect","data":{"server":"dworld"}}"#;

async fn server() -> RunningServer {
    start(
        Server::builder()
            .provider(MockWorld::new().with_cadence(Duration::ZERO, Duration::ZERO))
            .max_frame_bytes(4096)
            .message_rate(0, 0),
    )
    .await
}

/// One frame as the server sent it.
#[derive(Debug, PartialEq, Eq)]
struct Received {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

/// A WebSocket client that sends whatever bytes it is told to.
struct RawWs {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    /// Opens a connection and reads the upgrade answer and `server-list`.
    async fn connect(addr: SocketAddr) -> RawWs {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&upgrade_request(
            "dGhlIHNhbXBsZSBub25jZQ==",
            "HTTP/1.1",
            &[],
        ))
        .await
        .unwrap();
        let mut ws = RawWs {
            tcp,
            buf: Vec::new(),
        };
        let head = ws.read_head().await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(
            head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "accept key: {head}"
        );
        let list = ws.frame().await.expect("server-list");
        assert!(String::from_utf8_lossy(&list.payload).contains("server-list"));
        ws
    }

    async fn read_head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return head;
            }
            self.fill().await.expect("the server answers the upgrade");
        }
    }

    async fn fill(&mut self) -> Option<()> {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(PATIENCE, self.tcp.read(&mut chunk))
            .await
            .expect("the server answers in time")
            .ok()?;
        if n == 0 {
            return None;
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Some(())
    }

    /// Sends one masked frame with the given first-byte bits.
    async fn send(&mut self, first: u8, payload: &[u8]) {
        let bytes = masked_frame(first, payload);
        let _ = self.tcp.write_all(&bytes).await;
    }

    async fn send_final(&mut self, opcode: u8, payload: &[u8]) {
        self.send(0x80 | opcode, payload).await;
    }

    /// The next frame, or `None` once the server closed the TCP connection.
    async fn frame(&mut self) -> Option<Received> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            self.fill().await?;
        }
    }

    /// The next frame that is not a chat line or presence (the world is quiet,
    /// but a join still brings a `server-join`).
    async fn frame_of(&mut self, opcode: u8) -> Received {
        loop {
            let frame = self.frame().await.expect("a frame");
            if frame.opcode == opcode {
                return frame;
            }
        }
    }

    /// Reads until the server's close frame; returns its code, and checks
    /// the server then ends the TCP connection.
    async fn expect_close(&mut self) -> u16 {
        loop {
            let frame = self.frame().await.expect("a close frame before the end");
            if frame.opcode == CLOSE {
                assert!(frame.payload.len() >= 2, "a close frame with a code");
                let code = u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
                assert!(
                    std::str::from_utf8(&frame.payload[2..]).is_ok(),
                    "the reason is UTF-8"
                );
                assert!(self.frame().await.is_none(), "then the connection ends");
                return code;
            }
        }
    }

    /// Sends `connect` and waits for `server-join`: the connection still works.
    async fn still_works(&mut self) {
        self.send_final(TEXT, CONNECT).await;
        let join = self.frame_of(TEXT).await;
        assert!(
            String::from_utf8_lossy(&join.payload).contains("server-join"),
            "{join:?}"
        );
    }
}

fn upgrade_request(key: &str, version: &str, extra: &[&str]) -> Vec<u8> {
    let mut request = format!(
        "GET /ws {version}\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for line in extra {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.into_bytes()
}

fn masked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
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

fn parse_server_frame(buf: &[u8]) -> Option<(Received, usize)> {
    if buf.len() < 2 {
        return None;
    }
    assert_eq!(buf[0] & 0x70, 0, "the server sets no reserved bit");
    assert_eq!(buf[1] & 0x80, 0, "server frames are not masked");
    let (len, head) = match buf[1] & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().unwrap()) as usize,
            10,
        ),
        n => (usize::from(n), 2),
    };
    let payload = buf.get(head..head + len)?.to_vec();
    Some((
        Received {
            fin: buf[0] & 0x80 != 0,
            opcode: buf[0] & 0x0f,
            payload,
        },
        head + len,
    ))
}

/// A `connect` padded with spaces to exactly `len` bytes.
fn connect_of_length(len: usize) -> Vec<u8> {
    let mut text = CONNECT.to_vec();
    text.resize(len, b' ');
    text
}

// --- Framing and lengths -------------------------------------------------------

#[tokio::test]
async fn framing_every_length_encoding_is_read() {
    let server = server().await;
    for len in [CONNECT.len(), 125, 126, 127, 1000, 4096] {
        let mut ws = RawWs::connect(server.local_addr()).await;
        ws.send_final(TEXT, &connect_of_length(len)).await;
        let join = ws.frame_of(TEXT).await;
        assert!(
            String::from_utf8_lossy(&join.payload).contains("server-join"),
            "{len}"
        );
    }
    // A 64-bit length field for a short payload is still read.
    let mut ws = RawWs::connect(server.local_addr()).await;
    let mut frame = vec![0x81, 0x80 | 127];
    frame.extend_from_slice(&(CONNECT.len() as u64).to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(CONNECT);
    ws.tcp.write_all(&frame).await.unwrap();
    ws.frame_of(TEXT).await;
    server.shutdown().await;
}

#[tokio::test]
async fn framing_a_frame_sent_one_byte_at_a_time_is_read() {
    let server = server().await;
    let mut ws = RawWs::connect(server.local_addr()).await;
    for byte in masked_frame(0x81, CONNECT) {
        ws.tcp.write_all(&[byte]).await.unwrap();
        ws.tcp.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let join = ws.frame_of(TEXT).await;
    assert!(String::from_utf8_lossy(&join.payload).contains("server-join"));
    server.shutdown().await;
}

#[tokio::test]
async fn framing_server_frames_are_whole_and_unmasked() {
    let server = server().await;
    let mut ws = RawWs::connect(server.local_addr()).await;
    ws.send_final(TEXT, CONNECT).await;
    let join = ws.frame_of(TEXT).await;
    assert!(join.fin, "the server never fragments");
    server.shutdown().await;
}

// --- Ping and pong -------------------------------------------------------------

#[tokio::test]
async fn pings_are_answered_with_their_payload_and_pongs_ignored() {
    let server = server().await;
    let mut ws = RawWs::connect(server.local_addr()).await;
    for payload in [&b""[..], b"hello", &[0xfe; 125][..]] {
        ws.send_final(PING, payload).await;
        let pong = ws.frame_of(PONG).await;
        assert_eq!(pong.payload, payload);
    }
    ws.send_final(PONG, b"unsolicited").await;
    ws.still_works().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_ping_over_125_bytes_or_fragmented_is_a_protocol_error() {
    let server = server().await;
    let mut ws = RawWs::connect(server.local_addr()).await;
    ws.send_final(PING, &[0; 126]).await;
    assert_eq!(ws.expect_close().await, 1002);
    let mut ws = RawWs::connect(server.local_addr()).await;
    ws.send(PING, b"no fin").await;
    assert_eq!(ws.expect_close().await, 1002);
    server.shutdown().await;
}

// --- Reserved bits -------------------------------------------------------------

#[tokio::test]
async fn reserved_bits_without_an_extension_are_a_protocol_error() {
    let server = server().await;
    for rsv in [0x40, 0x20, 0x10, 0x70] {
        let mut ws = RawWs::connect(server.local_addr()).await;
        ws.send(0x80 | rsv | TEXT, CONNECT).await;
        assert_eq!(ws.expect_close().await, 1002, "rsv {rsv:#x}");
    }
    let mut ws = RawWs::connect(server.local_addr()).await;
    ws.send(0x80 | 0x40 | PING, b"x").await;
    assert_eq!(ws.expect_close().await, 1002, "on a control frame too");
    server.shutdown().await;
}

// --- Opcodes ----------------------------------------------------------------------

#[tokio::test]
async fn reserved_opcodes_are_a_protocol_error() {
    let server = server().await;
    for opcode in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        let mut ws = RawWs::connect(server.local_addr()).await;
        ws.send_final(opcode, b"").await;
        assert_eq!(ws.expect_close().await, 1002, "opcode {opcode:#x}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn binary_frames_are_read_as_utf8_text_messages() {
    let server = server().await;
    let mut ws = RawWs::connect(server.local_addr()).await;
    ws.send_final(BINARY, CONNECT).await;
    let join = ws.frame_of(TEXT).await;
    assert!(String::from_utf8_lossy(&join.payload).contains("server-join"));
    server.shutdown().await;
}

// --- Fragmentation ------------------------------------------------------------------

#[tokio::test]
async fn fragmented_messages_are_reassembled_with_control_frames_between() {
    let server = server().await;
    let mut ws = RawWs::connect(server.local_addr()).await;
    let (a, rest) = CONNECT.split_at(10);
    let (b, c) = rest.split_at(10);
    ws.send(TEXT, a).await;
    ws.send(CONTINUATION, b"").await;
    ws.send_final(PING, b"between").await;
    ws.send(CONTINUATION, b).await;
    ws.send_final(CONTINUATION, c).await;
    assert_eq!(ws.frame_of(PONG).await.payload, b"between");
    let join = ws.frame_of(TEXT).await;
    assert!(String::from_utf8_lossy(&join.payload).contains("server-join"));
    server.shutdown().await;
}

#[tokio::test]
async fn fragments_out_of_order_are_a_protocol_error() {
    let server = server().await;
    let mut ws = RawWs::connect(server.local_addr()).await;
    ws.send_final(CONTINUATION, b"no start").await;
    assert_eq!(
        ws.expect_close().await,
        1002,
        "continuation with nothing to continue"
    );
    let mut ws = RawWs::connect(server.local_addr()).await;
    ws.send(TEXT, b"{\"type\":").await;
    ws.send_final(TEXT, CONNECT).await;
    assert_eq!(
        ws.expect_close().await,
        1002,
        "a new message inside a fragmented one"
    );
    server.shutdown().await;
}

// --- UTF-8 ----------------------------------------------------------------------------

#[tokio::test]
async fn text_that_is_not_utf8_closes_with_1007() {
    let server = server().await;
    let cases: [&[&[u8]]; 4] = [
        &[b"\xff"],
        &[b"{\"a\":\"\xed\xa0\x80\"}"], // a UTF-16 surrogate
        &[b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"],
        &[b"valid so far \xce", b"\xba then broken \xf4\x90\x80\x80"],
    ];
    for fragments in cases {
        let mut ws = RawWs::connect(server.local_addr()).await;
        let last = fragments.len() - 1;
        for (i, fragment) in fragments.iter().enumerate() {
            let opcode = if i == 0 { TEXT } else { CONTINUATION };
            let fin = if i == last { 0x80 } else { 0 };
            ws.send(fin | opcode, fragment).await;
        }
        assert_eq!(ws.expect_close().await, 1007, "{fragments:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn utf8_split_between_fragments_is_fine() {
    let server = server().await;
    let mut ws = RawWs::connect(server.local_addr()).await;
    // "κόσμε" in an unknown message type, split inside a character.
    let text = "{\"type\":\"κόσμε\"}".as_bytes();
    ws.send(TEXT, &text[..11]).await;
    ws.send_final(CONTINUATION, &text[11..]).await;
    let error = ws.frame_of(TEXT).await;
    assert!(String::from_utf8_lossy(&error.payload).contains("\"error\""));
    ws.still_works().await;
    server.shutdown().await;
}

// --- Close handling -------------------------------------------------------------------

#[tokio::test]
async fn a_valid_close_is_answered_by_echoing_its_code() {
    let server = server().await;
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        let mut ws = RawWs::connect(server.local_addr()).await;
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice("bye ☁".as_bytes());
        ws.send_final(CLOSE, &payload).await;
        assert_eq!(ws.expect_close().await, code);
    }
    let mut ws = RawWs::connect(server.local_addr()).await;
    ws.send_final(CLOSE, b"").await;
    assert_eq!(
        ws.expect_close().await,
        1000,
        "an empty close is answered normally"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_invalid_close_is_a_protocol_error() {
    let server = server().await;
    let mut ws = RawWs::connect(server.local_addr()).await;
    ws.send_final(CLOSE, &[0x03]).await;
    assert_eq!(ws.expect_close().await, 1002, "a one-byte close payload");
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let mut ws = RawWs::connect(server.local_addr()).await;
        ws.send_final(CLOSE, &code.to_be_bytes()).await;
        assert_eq!(ws.expect_close().await, 1002, "close code {code}");
    }
    let mut ws = RawWs::connect(server.local_addr()).await;
    ws.send_final(CLOSE, &[0x03, 0xe8, 0xff, 0xfe]).await;
    assert_eq!(ws.expect_close().await, 1007, "a reason that is not UTF-8");
    let mut ws = RawWs::connect(server.local_addr()).await;
    ws.send(CLOSE, &[0x03, 0xe8]).await;
    assert_eq!(ws.expect_close().await, 1002, "a fragmented close");
    server.shutdown().await;
}

#[tokio::test]
async fn nothing_is_read_after_a_close() {
    let server = server().await;
    let mut ws = RawWs::connect(server.local_addr()).await;
    ws.send_final(CLOSE, &1000u16.to_be_bytes()).await;
    ws.send_final(TEXT, CONNECT).await;
    assert_eq!(ws.expect_close().await, 1000);
    server.shutdown().await;
}

// --- Limits ------------------------------------------------------------------------------

#[tokio::test]
async fn a_frame_or_message_over_the_limit_closes_with_1009() {
    let server = server().await;
    let mut ws = RawWs::connect(server.local_addr()).await;
    ws.send_final(TEXT, &connect_of_length(4097)).await;
    assert_eq!(ws.expect_close().await, 1009, "one frame");
    let mut ws = RawWs::connect(server.local_addr()).await;
    ws.send(TEXT, &[b' '; 3000]).await;
    ws.send_final(CONTINUATION, &[b' '; 3000]).await;
    assert_eq!(ws.expect_close().await, 1009, "a reassembled message");
    let mut ws = RawWs::connect(server.local_addr()).await;
    let mut huge = vec![0x81, 0x80 | 127];
    huge.extend_from_slice(&u64::MAX.to_be_bytes());
    ws.tcp.write_all(&huge).await.unwrap();
    assert_eq!(ws.expect_close().await, 1009, "a length field that lies");
    server.shutdown().await;
}

// --- The opening handshake ---------------------------------------------------------------

async fn handshake_status(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn bad_opening_handshakes_get_a_clear_4xx() {
    let server = server().await;
    let addr = server.local_addr();
    // `Connection: close` as well, so that each answer ends its connection.
    let with_close = |mut request: Vec<u8>| {
        request.truncate(request.len() - 2);
        request.extend_from_slice(b"Connection: close\r\n\r\n");
        request
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a key of 15 bytes",
            upgrade_request("dGhlIHNhbXBsZSBub25j", "HTTP/1.1", &[]),
            "400",
        ),
        (
            "a key that is not base64",
            upgrade_request("not base64 at all!!!!!==", "HTTP/1.1", &[]),
            "400",
        ),
        (
            "HTTP/1.0",
            upgrade_request("dGhlIHNhbXBsZSBub25jZQ==", "HTTP/1.0", &[]),
            "400",
        ),
        (
            "no key",
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "another version",
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n".to_vec(),
            "426",
        ),
        (
            "no Connection: upgrade",
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "a POST",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec(),
            "400",
        ),
    ];
    for (what, request, expected) in cases {
        let answer = handshake_status(addr, &with_close(request)).await;
        assert_eq!(answer.split(' ').nth(1), Some(expected), "{what}: {answer}");
        assert!(answer.contains("\r\n\r\n"), "{what}: a whole answer");
    }
    // Header names in any case, and `Connection` listing more than one token.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"GET / HTTP/1.1\r\nhost: x\r\nupgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\n\
          sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = [0u8; 12];
    tcp.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 101");
    server.shutdown().await;
}

// --- Garbage ---------------------------------------------------------------------------------

#[tokio::test]
async fn garbage_closes_only_its_sender() {
    let server = server().await;
    let addr = server.local_addr();
    let mut bystander = RawWs::connect(addr).await;
    // Unmasked frames, then pure noise.
    let mut ws = RawWs::connect(addr).await;
    ws.tcp.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    assert_eq!(ws.expect_close().await, 1002);
    let mut noise = RawWs::connect(addr).await;
    let bytes: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let _ = noise.tcp.write_all(&bytes).await;
    let mut closed = false;
    while let Some(frame) = noise.frame().await {
        closed |= frame.opcode == CLOSE;
    }
    assert!(closed, "noise ends with a close frame");
    // Garbage instead of an HTTP request.
    let answer = handshake_status(addr, b"\x16\x03\x01\x02\x00garbage\r\n\r\n").await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    bystander.still_works().await;
    server.shutdown().await;
}

// --- permessage-deflate (RFC 7692) ----------------------------------------------------------

/// Opens a connection offering permessage-deflate; returns it with the
/// server's answer to the offer.
async fn connect_offering(addr: SocketAddr, offer: &str) -> (RawWs, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let header = format!("Sec-WebSocket-Extensions: {offer}");
    tcp.write_all(&upgrade_request(
        "dGhlIHNhbXBsZSBub25jZQ==",
        "HTTP/1.1",
        &[header.as_str()],
    ))
    .await
    .unwrap();
    let mut ws = RawWs {
        tcp,
        buf: Vec::new(),
    };
    let head = ws.read_head().await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    (ws, head.to_ascii_lowercase())
}

/// A frame's payload as the client sees it, inflated when RSV1 marks it compressed.
fn payload_of(raw: &[u8]) -> (bool, Vec<u8>) {
    let compressed = raw[0] & 0x40 != 0;
    let (frame, _) = parse_server_frame_any(raw).unwrap();
    if compressed {
        (true, edge::deflate::inflate(&frame, 1 << 24).unwrap())
    } else {
        (false, frame)
    }
}

fn parse_server_frame_any(buf: &[u8]) -> Option<(Vec<u8>, usize)> {
    let (len, head) = match buf[1] & 0x7f {
        126 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 => (
            u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
            10,
        ),
        n => (usize::from(n), 2),
    };
    Some((buf.get(head..head + len)?.to_vec(), head + len))
}

impl RawWs {
    /// The next whole frame's bytes, header included, RSV1 allowed.
    async fn raw_frame(&mut self) -> Vec<u8> {
        loop {
            if self.buf.len() >= 2
                && let Some((_, used)) = parse_server_frame_any(&self.buf)
            {
                return self.buf.drain(..used).collect();
            }
            self.fill().await.expect("a frame");
        }
    }
}

#[tokio::test]
async fn permessage_deflate_is_negotiated_and_spoken_both_ways() {
    let server = server().await;
    let addr = server.local_addr();
    let (mut ws, head) = connect_offering(addr, "permessage-deflate; client_max_window_bits").await;
    assert!(
        head.contains(
            "sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        ),
        "{head}"
    );
    let (_, list) = payload_of(&ws.raw_frame().await);
    assert!(String::from_utf8_lossy(&list).contains("server-list"));

    // A compressed `connect` is understood; the `server-join` comes back compressed.
    ws.send(0x80 | 0x40 | TEXT, &edge::deflate::compress(CONNECT))
        .await;
    let (compressed, join) = payload_of(&ws.raw_frame().await);
    assert!(compressed, "a server-join is worth compressing");
    let join: serde_json::Value = serde_json::from_slice(&join).unwrap();
    assert_eq!(join["type"], "server-join");

    // A compressed message that inflates past the limit closes with 1009.
    ws.send(
        0x80 | 0x40 | TEXT,
        &edge::deflate::compress(&[b' '; 100_000]),
    )
    .await;
    assert_eq!(
        ws.expect_close().await,
        1009,
        "the limit applies after inflating"
    );

    // Without an offer, or with one we cannot honour, nothing is compressed.
    let (mut plain, head) =
        connect_offering(addr, "permessage-deflate; server_max_window_bits=9").await;
    assert!(!head.contains("sec-websocket-extensions"), "{head}");
    plain.frame().await.expect("server-list");
    plain
        .send(0x80 | 0x40 | TEXT, &edge::deflate::compress(CONNECT))
        .await;
    assert_eq!(
        plain.expect_close().await,
        1002,
        "RSV1 without the extension"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn one_broadcast_is_compressed_once_for_every_client_that_asked() {
    let server = server().await;
    let addr = server.local_addr();
    let mut compressed_clients = Vec::new();
    for _ in 0..3 {
        let (mut ws, _) = connect_offering(addr, "permessage-deflate").await;
        ws.raw_frame().await;
        ws.send(0x80 | 0x40 | TEXT, &edge::deflate::compress(CONNECT))
            .await;
        ws.raw_frame().await;
        compressed_clients.push(ws);
    }
    let mut plain = RawWs::connect(addr).await;
    plain.still_works().await;
    let line = "the same long chat line for every watcher ".repeat(10);
    server.hub().broadcast_message(
        DWORLD,
        d_back::ChatMessage {
            uid: "123456789012345001".into(),
            message: line.clone(),
            channel: "c".into(),
        },
    );
    let mut seen = Vec::new();
    for ws in &mut compressed_clients {
        let raw = ws.raw_frame().await;
        assert_ne!(raw[0] & 0x40, 0, "compressed");
        seen.push(raw);
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "the very same bytes");
    let plain_frame = plain.frame_of(TEXT).await;
    assert!(String::from_utf8_lossy(&plain_frame.payload).contains(&line));
    let (_, inflated) = payload_of(&seen[0]);
    assert_eq!(inflated, plain_frame.payload);
    assert!(seen[0].len() < plain_frame.payload.len() / 2);
    server.shutdown().await;
}
