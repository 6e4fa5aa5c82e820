//! The WebSocket wire format (RFC 6455), as much of it as a d-zone server needs.
//!
//! Written here rather than taken from tungstenite (which still provides the
//! handshake's accept key) because of what a broadcast server does all day:
//! send the *same* frame to thousands of sockets. A frame is encoded here once,
//! header included, into shared [`Bytes`]; a writer copies whatever is waiting
//! for its client into one short-lived buffer and hands it to the kernel with
//! one write, so no client keeps a write buffer at its high-water mark forever.
//! The reader keeps no buffer at all while a client is quiet, which is almost
//! always: it waits with a per-thread scratch space (see `Reader::read_idle`).
//! Together this is what keeps an idle joined connection to a few kilobytes and
//! lets fan-out run at the speed of the socket writes.
//!
//! Server frames are never masked or fragmented. Client frames must be masked;
//! fragmented messages are reassembled; text must be UTF-8; pings are answered
//! by the caller; anything else that breaks the RFC ends the connection.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Bytes asked of the socket per read: client frames are small.
const READ_CHUNK: usize = 512;

thread_local! {
    /// Where an idle connection's next read lands first (see `Reader::read_idle`).
    static SCRATCH: RefCell<[u8; 4096]> = const { RefCell::new([0; 4096]) };
}

/// A complete message from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    Binary(Vec<u8>),
    Ping(Bytes),
    Pong,
    /// The client's close code, if it gave one.
    Close(Option<u16>),
}

/// Why reading stopped.
#[derive(Debug)]
pub enum ReadError {
    /// A frame or message over the size limit.
    TooBig,
    /// The client broke the protocol (unmasked frame, bad opcode, a bad close
    /// frame...).
    Protocol(&'static str),
    /// A text message, or a close frame's reason, that is not UTF-8.
    InvalidUtf8,
    /// The connection ended or failed.
    Io(io::Error),
}

impl ReadError {
    /// The close code RFC 6455 gives this error (1009 too big, 1002 protocol
    /// error, 1007 invalid data), and the reason to send with it; `None` when
    /// the connection is already gone.
    ///
    /// ```
    /// use edge::ws::ReadError;
    /// assert_eq!(ReadError::InvalidUtf8.close().map(|(code, _)| code), Some(1007));
    /// ```
    pub fn close(&self) -> Option<(u16, &'static str)> {
        match self {
            ReadError::TooBig => Some((CLOSE_TOO_BIG, "frame too big")),
            ReadError::Protocol(what) => Some((CLOSE_PROTOCOL_ERROR, what)),
            ReadError::InvalidUtf8 => Some((CLOSE_INVALID_DATA, "text is not UTF-8")),
            ReadError::Io(_) => None,
        }
    }
}

/// Close code for a normal closure, also the answer to a client's close without a code.
pub const CLOSE_NORMAL: u16 = 1000;
/// Close code for a client that breaks the framing rules ("Protocol Error").
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code for text that is not UTF-8 ("Invalid frame payload data").
pub const CLOSE_INVALID_DATA: u16 = 1007;
/// Close code for a frame over the size limit ("Message Too Big").
pub const CLOSE_TOO_BIG: u16 = 1009;

/// Whether a client may send `code` in a close frame (RFC 6455 section 7.4):
/// the codes defined for use (1000–1003, 1007–1014), and those registered
/// for libraries and applications (3000–4999). 1005, 1006 and 1015 are for
/// reporting only and never sent; the rest are reserved.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Payloads shorter than this go out uncompressed even to clients that
/// negotiated permessage-deflate: deflate's own overhead would eat the gain.
const COMPRESS_FROM: usize = 64;

/// One encoded server frame, shared by every socket it goes to: its plain
/// form, and (made at most once, by the first writer whose client negotiated
/// permessage-deflate) its compressed form, which then goes to all of them.
///
/// ```
/// let frame = edge::ws::text_frame(&"a".repeat(1000));
/// assert_eq!(frame.len(), 1004, "header and payload, plain");
/// assert!(frame.for_client(true).len() < 100, "compressed, once, for those who asked");
/// assert_eq!(frame.for_client(false), &frame[..]);
/// ```
#[derive(Clone)]
pub struct Wire(std::sync::Arc<WireInner>);

struct WireInner {
    plain: Bytes,
    /// The permessage-deflate form; the plain one where compressing does not pay.
    deflated: std::sync::OnceLock<Bytes>,
}

impl Wire {
    fn new(plain: Bytes) -> Self {
        Self(std::sync::Arc::new(WireInner {
            plain,
            deflated: std::sync::OnceLock::new(),
        }))
    }

    /// The bytes to send to a client that did (`true`) or did not negotiate
    /// permessage-deflate.
    pub fn for_client(&self, deflate: bool) -> &[u8] {
        if deflate {
            self.0.deflated.get_or_init(|| deflated(&self.0.plain))
        } else {
            &self.0.plain
        }
    }

    /// The plain frame, header and payload.
    pub fn plain(&self) -> &Bytes {
        &self.0.plain
    }
}

impl std::ops::Deref for Wire {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0.plain
    }
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Wire").field(&self.0.plain).finish()
    }
}

impl From<Bytes> for Wire {
    /// Wraps one whole frame (already encoded, e.g. by this module).
    fn from(plain: Bytes) -> Self {
        Wire::new(plain)
    }
}

/// The permessage-deflate form of a whole plain data frame: RSV1 set and the
/// payload compressed; control frames and small or incompressible payloads
/// stay as they are.
fn deflated(plain: &Bytes) -> Bytes {
    let opcode = plain.first().map_or(OP_CLOSE, |b| b & 0x0F);
    let Some(payload) = server_frame_payload(plain) else {
        return plain.clone();
    };
    if opcode >= OP_CLOSE || payload.len() < COMPRESS_FROM {
        return plain.clone();
    }
    let packed = crate::deflate::compress(payload);
    if packed.len() + 8 >= payload.len() {
        return plain.clone();
    }
    let mut framed = BytesMut::from(&frame(opcode, &packed)[..]);
    framed[0] |= RSV1;
    framed.freeze()
}

/// The "per-message compressed" bit of RFC 7692.
const RSV1: u8 = 0x40;

/// Encodes a text frame, header and payload in one buffer to share between sockets.
pub fn text_frame(text: &str) -> Wire {
    Wire::new(frame(OP_TEXT, text.as_bytes()))
}

/// Encodes a text frame whose payload `write` puts into the buffer it is
/// given, so that a message serialized straight into it is not copied a
/// second time behind the header, as [`text_frame`] of a finished string is:
/// this runs once per broadcast message.
///
/// ```
/// let frame = edge::ws::text_frame_with(|out| out.extend_from_slice(b"hello"));
/// assert_eq!(&frame[..], &edge::ws::text_frame("hello")[..]);
/// let long = edge::ws::text_frame_with(|out| out.extend([b'a'; 70_000]));
/// assert_eq!(&long[..], &edge::ws::text_frame(&"a".repeat(70_000))[..]);
/// let medium = edge::ws::text_frame_with(|out| out.extend([b'a'; 300]));
/// assert_eq!(&medium[..], &edge::ws::text_frame(&"a".repeat(300))[..]);
/// ```
pub fn text_frame_with(write: impl FnOnce(&mut Vec<u8>)) -> Wire {
    // Room for the longest header in front; the header goes at its end.
    let mut buffer = Vec::with_capacity(128);
    buffer.resize(MAX_HEADER, 0);
    write(&mut buffer);
    let (header, header_len) = header(OP_TEXT, buffer.len() - MAX_HEADER);
    let start = MAX_HEADER - header_len;
    buffer[start..MAX_HEADER].copy_from_slice(&header[..header_len]);
    let mut plain = Bytes::from(buffer);
    plain.advance(start);
    Wire::new(plain)
}

/// Joins each run of consecutive uncompressed text frames in `frames` (a
/// server's unmasked frames, back to back) into one text frame whose payload
/// is their payloads separated by `\n`, the batch format Scratch clients and
/// TurboWarp's server use; other frames are copied as they are, in place.
///
/// ```
/// use edge::ws::{join_text_frames, text_frame};
/// let mut frames = Vec::new();
/// frames.extend_from_slice(text_frame("a").for_client(false));
/// frames.extend_from_slice(text_frame("b").for_client(false));
/// assert_eq!(join_text_frames(&frames), text_frame("a\nb").for_client(false));
/// ```
pub fn join_text_frames(frames: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frames.len());
    let mut joined: Vec<u8> = Vec::new();
    let mut texts = 0;
    let flush = |out: &mut Vec<u8>, joined: &mut Vec<u8>, texts: &mut usize| {
        if *texts > 0 {
            out.extend_from_slice(&frame(OP_TEXT, joined));
            joined.clear();
            *texts = 0;
        }
    };
    let mut rest = frames;
    while let Some((header, payload)) = split_server_frame(rest) {
        let whole = &rest[..header + payload];
        let is_plain_text = whole[0] == 0x80 | OP_TEXT;
        if is_plain_text {
            if texts > 0 {
                joined.push(b'\n');
            }
            joined.extend_from_slice(&whole[header..]);
            texts += 1;
        } else {
            flush(&mut out, &mut joined, &mut texts);
            out.extend_from_slice(whole);
        }
        rest = &rest[header + payload..];
    }
    flush(&mut out, &mut joined, &mut texts);
    // Anything that is not a whole frame (never made by this crate) is kept.
    out.extend_from_slice(rest);
    out
}

/// The header and payload lengths of the unmasked frame at the start of
/// `bytes`, if a whole one is there.
fn split_server_frame(bytes: &[u8]) -> Option<(usize, usize)> {
    let second = *bytes.get(1)?;
    let rest = &bytes[2..];
    let (header, payload): (usize, usize) = match second & 0x7F {
        126 => (
            4,
            usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)),
        ),
        127 => (
            10,
            usize::try_from(u64::from_be_bytes(rest.get(..8)?.try_into().ok()?)).ok()?,
        ),
        n => (2, usize::from(n)),
    };
    (bytes.len() >= header.checked_add(payload)?).then_some((header, payload))
}

/// A ping with an empty payload.
pub fn ping_frame() -> Wire {
    Wire::new(frame(OP_PING, &[]))
}

/// The answer to a ping, echoing its payload.
pub fn pong_frame(payload: &[u8]) -> Wire {
    Wire::new(frame(OP_PONG, payload))
}

/// A close frame with a code and a short reason.
pub fn close_frame(code: u16, reason: &str) -> Wire {
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    // Control frames carry at most 125 bytes of payload.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    Wire::new(frame(OP_CLOSE, &payload))
}

fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let (header, header_len) = header(opcode, payload.len());
    let mut out = BytesMut::with_capacity(header_len + payload.len());
    out.put_slice(&header[..header_len]);
    out.put_slice(payload);
    out.freeze()
}

/// The longest header of an unmasked frame: 2 bytes and an 8-byte length.
const MAX_HEADER: usize = 10;

/// The header of a whole, unmasked frame with a payload of `len` bytes, and
/// how many of the bytes it uses.
fn header(opcode: u8, len: usize) -> ([u8; MAX_HEADER], usize) {
    let mut header = [0u8; MAX_HEADER];
    header[0] = 0x80 | opcode;
    let used = match len {
        n if n < 126 => {
            header[1] = n as u8;
            2
        }
        n if n <= usize::from(u16::MAX) => {
            header[1] = 126;
            header[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            4
        }
        n => {
            header[1] = 127;
            header[2..10].copy_from_slice(&(n as u64).to_be_bytes());
            10
        }
    };
    (header, used)
}

/// The payload of one whole, unmasked frame made by this module (a server
/// frame), for a protocol that must look back into a queued frame.
///
/// ```
/// let frame = edge::ws::text_frame("hello");
/// assert_eq!(edge::ws::server_frame_payload(&frame), Some(&b"hello"[..]));
/// ```
pub fn server_frame_payload(frame: &[u8]) -> Option<&[u8]> {
    let (len, head): (usize, usize) = match *frame.get(1)? & 0x7F {
        126 => (
            usize::from(u16::from_be_bytes([*frame.get(2)?, *frame.get(3)?])),
            4,
        ),
        127 => {
            let bytes: [u8; 8] = frame.get(2..10)?.try_into().ok()?;
            (usize::try_from(u64::from_be_bytes(bytes)).ok()?, 10)
        }
        n => (usize::from(n), 2),
    };
    frame.get(head..head.checked_add(len)?)
}

/// Writes `bytes` (one or more whole frames) and flushes them, so that a TLS
/// stream sends them now rather than when its buffer fills.
pub async fn write_all<W: AsyncWrite + Unpin>(io: &mut W, bytes: &[u8]) -> io::Result<()> {
    io.write_all(bytes).await?;
    io.flush().await
}

/// Reads client frames and puts messages back together.
pub struct Reader<R> {
    io: R,
    decoder: Decoder,
}

/// Puts client messages back together from the bytes read so far, for a
/// connection that does its own reading (see [`crate::driver`]); [`Reader`]
/// is this plus a socket.
#[derive(Debug)]
pub struct Decoder {
    /// Bytes read and not yet parsed; released whenever it runs empty.
    buf: BytesMut,
    /// Largest frame, and largest reassembled message, accepted (a `u32`:
    /// every connection keeps one, and no sane limit is near 4 GiB).
    max_bytes: u32,
    /// Opcode and data of a fragmented message still being received, and
    /// whether it is compressed; boxed, since clients rarely fragment and
    /// every idle connection would carry its room.
    partial: Option<Box<(u8, Vec<u8>, bool)>>,
    /// Whether the client negotiated permessage-deflate (RSV1 marks a
    /// compressed message).
    deflate: bool,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// Reads frames from `io`; frames and messages over `max_bytes` (after
    /// inflating, for compressed ones) are refused.
    pub fn new(io: R, max_bytes: usize) -> Self {
        Self {
            io,
            decoder: Decoder::new(max_bytes),
        }
    }

    /// Accepts messages compressed with permessage-deflate (see
    /// [`crate::deflate`]), as negotiated in the opening handshake.
    pub fn with_deflate(mut self, deflate: bool) -> Self {
        self.decoder.deflate = deflate;
        self
    }

    /// The next complete message.
    pub async fn next(&mut self) -> Result<Incoming, ReadError> {
        loop {
            if let Some(message) = self.decoder.next_message()? {
                return Ok(message);
            }
            let n = std::future::poll_fn(|cx| self.decoder.poll_fill(&mut self.io, cx))
                .await
                .map_err(ReadError::Io)?;
            if n == 0 {
                return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }
}

impl Decoder {
    /// Refuses frames and messages over `max_bytes` (after inflating, for
    /// compressed ones).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_bytes: u32::try_from(max_bytes).unwrap_or(u32::MAX),
            partial: None,
            deflate: false,
        }
    }

    /// Accepts messages compressed with permessage-deflate.
    pub fn with_deflate(mut self, deflate: bool) -> Self {
        self.deflate = deflate;
        self
    }

    /// The next complete message in what was read so far, if there is one.
    pub fn next_message(&mut self) -> Result<Option<Incoming>, ReadError> {
        let message = self.parse()?;
        if message.is_some() && self.buf.is_empty() {
            // An idle connection should not keep a read buffer.
            self.buf = BytesMut::new();
        }
        Ok(message)
    }

    /// Reads what `io` has; `Ready(Ok(0))` is the end of the stream.
    ///
    /// While nothing is buffered it waits with no buffer of its own: each
    /// attempt reads into this thread's scratch space, and only bytes that
    /// arrived are copied. A connection spends nearly all its life waiting
    /// here, and across thousands of them a reserved chunk each would add up.
    pub fn poll_fill<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<io::Result<usize>> {
        if !self.buf.is_empty() {
            self.buf.reserve(READ_CHUNK);
            return tokio_util::io::poll_read_buf(Pin::new(io), cx, &mut self.buf);
        }
        SCRATCH.with_borrow_mut(|scratch| {
            let mut read = ReadBuf::new(scratch);
            // On `Pending` nothing was read (the `AsyncRead` contract), so
            // the scratch space is free for the next connection at once.
            ready!(Pin::new(io).poll_read(cx, &mut read))?;
            self.buf.extend_from_slice(read.filled());
            Poll::Ready(Ok(read.filled().len()))
        })
    }

    /// Takes one frame from the buffer if it is complete; returns a message if it ended one.
    fn parse(&mut self) -> Result<Option<Incoming>, ReadError> {
        loop {
            let b = &self.buf[..];
            if b.len() < 2 {
                return Ok(None);
            }
            let (fin, opcode, masked) = (b[0] & 0x80 != 0, b[0] & 0x0F, b[1] & 0x80 != 0);
            let compressed = b[0] & RSV1 != 0;
            if b[0] & 0x30 != 0 || (compressed && !self.deflate) {
                return Err(ReadError::Protocol(
                    "reserved bits set without an extension",
                ));
            }
            if !masked {
                return Err(ReadError::Protocol("client frames must be masked"));
            }
            let (len, head) = match b[1] & 0x7F {
                126 if b.len() >= 4 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4),
                127 if b.len() >= 10 => {
                    let mut n = [0; 8];
                    n.copy_from_slice(&b[2..10]);
                    (u64::from_be_bytes(n), 10)
                }
                126 | 127 => return Ok(None),
                n => (u64::from(n), 2),
            };
            if len > u64::from(self.max_bytes) {
                return Err(ReadError::TooBig);
            }
            let len = len as usize;
            if b.len() < head + 4 + len {
                // Reserve the whole frame once rather than growing chunk by chunk.
                self.buf.reserve(head + 4 + len - b.len());
                return Ok(None);
            }
            let mask = [b[head], b[head + 1], b[head + 2], b[head + 3]];
            self.buf.advance(head + 4);
            let mut payload = self.buf.split_to(len);
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= mask[i % 4];
            }
            if let Some(message) = self.frame(fin, opcode, compressed, payload)? {
                return Ok(Some(message));
            }
        }
    }

    fn frame(
        &mut self,
        fin: bool,
        opcode: u8,
        compressed: bool,
        payload: BytesMut,
    ) -> Result<Option<Incoming>, ReadError> {
        if opcode >= OP_CLOSE {
            if compressed {
                return Err(ReadError::Protocol("control frames are never compressed"));
            }
            if !fin || payload.len() > 125 {
                return Err(ReadError::Protocol(
                    "control frames must be whole and short",
                ));
            }
            return Ok(Some(match opcode {
                OP_CLOSE => Incoming::Close(close_code(&payload)?),
                OP_PING => Incoming::Ping(payload.freeze()),
                OP_PONG => Incoming::Pong,
                _ => return Err(ReadError::Protocol("unknown control opcode")),
            }));
        }
        let (opcode, data, message_compressed) =
            match (opcode, self.partial.take().map(|partial| *partial)) {
                (OP_CONTINUATION, Some(_)) if compressed => {
                    return Err(ReadError::Protocol(
                        "only a message's first frame may be marked compressed",
                    ));
                }
                (OP_CONTINUATION, Some((first, mut data, was_compressed))) => {
                    if data.len() + payload.len() > self.max_bytes as usize {
                        return Err(ReadError::TooBig);
                    }
                    data.extend_from_slice(&payload);
                    (first, data, was_compressed)
                }
                (OP_TEXT | OP_BINARY, None) => (opcode, payload.to_vec(), compressed),
                _ => return Err(ReadError::Protocol("unexpected data frame opcode")),
            };
        if !fin {
            self.partial = Some(Box::new((opcode, data, message_compressed)));
            return Ok(None);
        }
        let data = if message_compressed {
            crate::deflate::inflate(&data, self.max_bytes as usize).map_err(
                |error| match error {
                    crate::deflate::InflateError::TooBig => ReadError::TooBig,
                    crate::deflate::InflateError::Corrupt => {
                        ReadError::Protocol("a compressed message that does not inflate")
                    }
                },
            )?
        } else {
            data
        };
        Ok(Some(if opcode == OP_TEXT {
            Incoming::Text(String::from_utf8(data).map_err(|_| ReadError::InvalidUtf8)?)
        } else {
            Incoming::Binary(data)
        }))
    }
}

/// The code of a client's close frame, after checking it as RFC 6455 section
/// 5.5.1 and 7.4 ask: no payload, or a valid code followed by a UTF-8 reason.
fn close_code(payload: &[u8]) -> Result<Option<u16>, ReadError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ReadError::Protocol("a close frame cannot carry one byte")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !is_valid_close_code(code) {
                return Err(ReadError::Protocol("invalid close code"));
            }
            std::str::from_utf8(reason).map_err(|_| ReadError::InvalidUtf8)?;
            Ok(Some(code))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_of_text_frames_are_joined_and_others_kept_in_place() {
        let long = "y".repeat(300);
        let mut frames = Vec::new();
        for part in [
            text_frame("a"),
            text_frame(&long),
            ping_frame(),
            text_frame("b"),
            close_frame(1000, "bye"),
        ] {
            frames.extend_from_slice(part.for_client(false));
        }
        let mut expected = Vec::new();
        for part in [
            text_frame(&format!("a\n{long}")),
            ping_frame(),
            text_frame("b"),
            close_frame(1000, "bye"),
        ] {
            expected.extend_from_slice(part.for_client(false));
        }
        assert_eq!(join_text_frames(&frames), expected);
        assert!(join_text_frames(&[]).is_empty());
        // A cut-off frame is passed on untouched.
        assert_eq!(join_text_frames(&[0x81, 5, b'a']), [0x81, 5, b'a']);
    }

    use super::*;

    /// A client frame as a browser would send it.
    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut out = vec![first];
        if payload.len() < 126 {
            out.push(0x80 | payload.len() as u8);
        } else {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    async fn read_all(bytes: Vec<u8>, max: usize) -> Vec<Result<Incoming, String>> {
        let mut reader = Reader::new(&bytes[..], max);
        let mut out = Vec::new();
        loop {
            match reader.next().await {
                Ok(m) => out.push(Ok(m)),
                Err(ReadError::Io(_)) => return out,
                Err(e) => {
                    out.push(Err(format!("{e:?}")));
                    return out;
                }
            }
        }
    }

    #[tokio::test]
    async fn reads_masked_fragmented_and_control_frames() {
        let mut wire = masked(0x81, b"hello");
        wire.extend(masked(0x01, b"hel"));
        wire.extend(masked(0x89, b"p")); // a ping between fragments
        wire.extend(masked(0x80, b"lo again"));
        wire.extend(masked(0x82, &[0xff, 0xfe]));
        wire.extend(masked(0x81, &[b'x'; 300]));
        wire.extend(masked(0x88, &1000u16.to_be_bytes()));
        let got = read_all(wire, 1024).await;
        assert_eq!(
            got,
            vec![
                Ok(Incoming::Text("hello".into())),
                Ok(Incoming::Ping(Bytes::from_static(b"p"))),
                Ok(Incoming::Text("hello again".into())),
                Ok(Incoming::Binary(vec![0xff, 0xfe])),
                Ok(Incoming::Text("x".repeat(300))),
                Ok(Incoming::Close(Some(1000))),
            ]
        );
    }

    #[tokio::test]
    async fn refuses_what_the_rfc_forbids() {
        let too_big = read_all(masked(0x81, &[b'x'; 300]), 100).await;
        assert_eq!(too_big, vec![Err("TooBig".into())]);
        let unmasked = read_all(vec![0x81, 1, b'x'], 100).await;
        assert!(matches!(&unmasked[0], Err(e) if e.contains("masked")));
        let compressed_without_deflate = read_all(masked(0xC1, b"x"), 100).await;
        assert!(matches!(&compressed_without_deflate[0], Err(e) if e.contains("reserved")));
        let bad_utf8 = read_all(masked(0x81, &[0xff]), 100).await;
        assert_eq!(bad_utf8, vec![Err("InvalidUtf8".into())]);
        // "é" split between two fragments is fine; a lone half is not.
        let mut split = masked(0x01, &[0xc3]);
        split.extend(masked(0x80, &[0xa9]));
        assert_eq!(
            read_all(split, 100).await,
            vec![Ok(Incoming::Text("é".into()))]
        );
    }

    #[tokio::test]
    async fn compressed_messages_are_inflated_within_the_limit() {
        let text = r#"{"type":"connect","data":{"server":"dworld"}}"#.repeat(20);
        let packed = crate::deflate::compress(text.as_bytes());
        let (first, rest) = packed.split_at(packed.len() / 2);
        let mut wire = masked(0xC1, &packed);
        wire.extend(masked(0x41, first));
        wire.extend(masked(0x89, b"p"));
        wire.extend(masked(0x80, rest));
        wire.extend(masked(0x81, b"plain"));
        let read = |wire: Vec<u8>, limit| async move {
            let mut reader = Reader::new(&wire[..], limit).with_deflate(true);
            let mut out = Vec::new();
            while let Ok(message) = reader.next().await {
                out.push(message);
            }
            out
        };
        assert_eq!(
            read(wire, 4096).await,
            vec![
                Incoming::Text(text.clone()),
                Incoming::Ping(Bytes::from_static(b"p")),
                Incoming::Text(text.clone()),
                Incoming::Text("plain".into()),
            ]
        );
        let bomb = crate::deflate::compress(&vec![b' '; 1 << 20]);
        let bomb = masked(0xC1, &bomb);
        let mut reader = Reader::new(&bomb[..], 4096).with_deflate(true);
        assert!(matches!(reader.next().await, Err(ReadError::TooBig)));
        let compressed_ping = masked(0xC9, b"");
        let mut reader = Reader::new(&compressed_ping[..], 4096).with_deflate(true);
        assert!(matches!(reader.next().await, Err(ReadError::Protocol(_))));
    }

    #[tokio::test]
    async fn close_frames_are_checked() {
        let close = |payload: &[u8]| read_all(masked(0x88, payload), 200);
        assert_eq!(close(&[]).await, vec![Ok(Incoming::Close(None))]);
        assert_eq!(
            close(&[0x03, 0xe8]).await,
            vec![Ok(Incoming::Close(Some(1000)))]
        );
        assert_eq!(
            close(&[0x0b, 0xb8, b'o', b'k']).await,
            vec![Ok(Incoming::Close(Some(3000)))]
        );
        assert!(matches!(&close(&[0x03]).await[0], Err(e) if e.contains("one byte")));
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            let got = close(&code.to_be_bytes()).await;
            assert!(
                matches!(&got[0], Err(e) if e.contains("invalid close code")),
                "{code}"
            );
        }
        assert_eq!(
            close(&[0x03, 0xe8, 0xff]).await,
            vec![Err("InvalidUtf8".into())]
        );
    }

    #[tokio::test]
    async fn server_frames_are_unmasked_and_whole() {
        let mut out = Vec::new();
        write_all(&mut out, &text_frame(&"b".repeat(200)))
            .await
            .unwrap();
        assert_eq!(&out[..4], &[0x81, 126, 0, 200]);
        assert_eq!(out.len(), 4 + 200);
        assert_eq!(&ping_frame()[..2], &[0x89, 0]);
        assert_eq!(
            &close_frame(1013, "slow")[..],
            &[0x88, 6, 0x03, 0xF5, b's', b'l', b'o', b'w']
        );
    }
}
