//! A deliberately small WebSocket client for the load generator.
//!
//! It does only what the measurements need, so that thousands of clients cost
//! the generator little: one fixed upgrade request, frame headers parsed in
//! place in one reusable buffer (server frames are never masked), payloads
//! looked at only when a caller asks, pings answered with pongs (both servers
//! drop clients that go silent), and client frames masked with the all-zero key
//! (valid per RFC 6455, and it saves XORing).

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

pub const OP_TEXT: u8 = 0x1;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// One connection, its read buffer and the unparsed bytes in it.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Start of the bytes not yet parsed.
    start: usize,
    /// End of the bytes read so far.
    end: usize,
}

impl Client {
    /// Connects and completes the WebSocket upgrade.
    ///
    /// `source` is the local address to connect from: spreading clients over
    /// 127.0.0.x keeps the kernel's search for a free ephemeral port short when
    /// tens of thousands of connections go to one server port.
    pub async fn open(addr: SocketAddr, source: IpAddr, buf_bytes: usize) -> io::Result<Self> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source, 0))?;
        let mut stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: ZC1iYWNrIGJlbmNoIGtleQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut client = Self {
            stream,
            buf: vec![0; buf_bytes.max(1024)],
            start: 0,
            end: 0,
        };
        loop {
            if client.fill().await? == 0 {
                return Err(io::Error::other("server closed during the upgrade"));
            }
            let head = &client.buf[..client.end];
            if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                if !head.starts_with(b"HTTP/1.1 101") {
                    let line = String::from_utf8_lossy(&head[..head.len().min(60)]).into_owned();
                    return Err(io::Error::other(format!("upgrade refused: {line}")));
                }
                client.start = at + 4;
                return Ok(client);
            }
        }
    }

    /// Reads more bytes; 0 means the server closed the connection.
    pub async fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                // One frame larger than the buffer (e.g. a big server-join).
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Hands every complete buffered frame to `each` as (opcode, payload).
    pub fn drain(&mut self, mut each: impl FnMut(u8, &[u8])) {
        while let Some((opcode, head, len)) = header(&self.buf[self.start..self.end]) {
            let from = self.start + head;
            if self.end - from < len {
                break;
            }
            each(opcode, &self.buf[from..from + len]);
            self.start = from + len;
        }
    }

    /// Waits for the next text frame, answering pings on the way; for the set-up
    /// frames, where copying the payload does not matter.
    pub async fn next_text(&mut self) -> io::Result<Vec<u8>> {
        loop {
            let mut found = None;
            let mut pings = Vec::new();
            while found.is_none() {
                let Some((opcode, head, len)) = header(&self.buf[self.start..self.end]) else {
                    break;
                };
                let from = self.start + head;
                if self.end - from < len {
                    break;
                }
                let payload = &self.buf[from..from + len];
                match opcode {
                    OP_TEXT => found = Some(payload.to_vec()),
                    OP_PING => pings.push(payload.to_vec()),
                    OP_CLOSE => return Err(io::Error::other("server closed the WebSocket")),
                    _ => {}
                }
                self.start = from + len;
            }
            for ping in pings {
                self.pong(&ping).await?;
            }
            if let Some(text) = found {
                return Ok(text);
            }
            if self.fill().await? == 0 {
                return Err(io::Error::other("server closed the connection"));
            }
        }
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: &[u8]) -> io::Result<()> {
        self.send(0x80 | OP_TEXT, text).await
    }

    /// Answers a ping.
    pub async fn pong(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send(0x80 | OP_PONG, payload).await
    }

    async fn send(&mut self, first: u8, payload: &[u8]) -> io::Result<()> {
        let mut frame = Vec::with_capacity(payload.len() + 8);
        frame.push(first);
        if payload.len() < 126 {
            frame.push(0x80 | payload.len() as u8);
        } else {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        frame.extend_from_slice(&[0, 0, 0, 0]); // mask key: XOR with zero
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame).await
    }
}

/// Parses a frame header: (opcode, header length, payload length), if complete.
fn header(b: &[u8]) -> Option<(u8, usize, usize)> {
    if b.len() < 2 {
        return None;
    }
    let opcode = b[0] & 0x0F;
    let masked = b[1] & 0x80 != 0;
    let (len, mut head) = match b[1] & 0x7F {
        126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
        127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().ok()?) as usize, 10),
        126 | 127 => return None,
        short => (short as usize, 2),
    };
    if masked {
        head += 4;
    }
    (b.len() >= head).then_some((opcode, head, len))
}

/// The number after `t=` in a payload: the producer's send time in ns since the epoch.
pub fn sent_at_nanos(payload: &[u8]) -> Option<u128> {
    let at = payload.windows(2).position(|w| w == b"t=")? + 2;
    let digits = payload[at..].iter().take_while(|b| b.is_ascii_digit());
    let mut value: u128 = 0;
    let mut any = false;
    for d in digits {
        value = value * 10 + u128::from(d - b'0');
        any = true;
    }
    any.then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_timestamps_parse() {
        assert_eq!(header(&[0x81, 5, b'h']), Some((1, 2, 5)));
        assert_eq!(header(&[0x81, 126, 1]), None);
        assert_eq!(header(&[0x81, 126, 1, 0]), Some((1, 4, 256)));
        let text = br#"{"data":{"message":"t=1795328906788191455","channel":"b"}}"#;
        assert_eq!(sent_at_nanos(text), Some(1_795_328_906_788_191_455));
        assert_eq!(sent_at_nanos(b"no stamp"), None);
    }
}
