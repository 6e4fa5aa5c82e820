//! The byte stream under every connection, plain or TLS, with a limit on how
//! long a write may stay blocked.
//!
//! A client that asks for a large file (or upgrades to a WebSocket) and then
//! never reads would otherwise hold its connection, and the response buffered
//! for it, forever: the kernel's send buffer fills, the write waits, and no
//! deadline of HTTP's own covers that wait. Here a write that makes no
//! progress for the stall limit fails with `TimedOut`, which ends the
//! connection like any other socket error. The timer exists only while a write
//! is blocked, so an idle connection pays one empty `Option` for it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;

/// A plain or TLS socket. TLS is boxed: its session is over a kilobyte, and
/// an unboxed `Either` would make every plain connection carry that much too.
pub type Socket = Either<TcpStream, Box<TlsStream<TcpStream>>>;

/// A socket whose writes give up after being blocked for `stall`.
#[derive(Debug)]
pub struct Stream {
    inner: Socket,
    stall: Duration,
    /// Running while a write (or flush) is blocked.
    blocked: Option<Pin<Box<Sleep>>>,
}

impl Stream {
    /// Wraps `inner`; blocked writes fail after `stall`.
    pub fn new(inner: Socket, stall: Duration) -> Self {
        Self {
            inner,
            stall,
            blocked: None,
        }
    }

    /// Turns a blocked write into a timer, and an expired timer into an error.
    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.blocked = None;
            return result;
        }
        let stall = self.stall;
        let timer = self
            .blocked
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        ready!(timer.as_mut().poll(cx));
        self.blocked = None;
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the client read nothing for {stall:?}"),
        )))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.guard(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.guard(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.guard(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.guard(cx, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_write_nobody_reads_fails_after_the_stall_limit() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut stream = Stream::new(Either::Left(server), Duration::from_millis(200));
        let chunk = vec![0u8; 64 * 1024];
        let started = std::time::Instant::now();
        let error = loop {
            if let Err(error) = stream.write_all(&chunk).await {
                break error;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "never stalled");
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        drop(client);
    }
}
