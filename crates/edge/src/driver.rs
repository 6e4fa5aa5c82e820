//! One WebSocket connection served by one small future: reading, handling,
//! writing, pinging and every deadline, with no second task.
//!
//! The usual shape of a session (a reader task, a writer task, a timer per
//! wait, a boxed future per way of ending) costs a few kilobytes per
//! connection before the connection has done anything, and a CloudLink or
//! Scratch host keeps thousands of clients that mostly do nothing. Here one
//! [`Driver`] holds the socket, the [`Decoder`], the connection's
//! [`Outbox`] and one timer, and polls them all from the session's own task:
//!
//! - the outbox wakes the task when there is something to write (see
//!   [`Outbox::poll_next`]), and what is taken goes out with one write, from a
//!   buffer that exists only while it is being written;
//! - bytes from the client are read into a per-thread scratch space while
//!   nothing is buffered (see [`Decoder::poll_fill`]), and each message is
//!   given to the protocol's [`Handler`]; a message that needs to wait (hooks,
//!   a store) runs as a boxed future, and the next message is read only once
//!   it is done, so messages are handled in order while writing goes on;
//! - one timer is armed for the nearest of: the next ping, the silence limit,
//!   the join deadline, the end of a batching period, and how long a blocked
//!   write is tolerated. It is re-armed only when a deadline moves earlier;
//!   when it fires early, the deadlines are simply checked again.
//!
//! The protocol keeps what is its own: what a message means, what to do when
//! the client leaves (its hooks may wait), and which close codes to send.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::time::Sleep;
use tracing::{debug, info};

use crate::moment::Moment;
use crate::outbox::{Frame, Next, Outbox, Urgency};
use crate::websocket::{Control, StopReason, Upgraded};
use crate::writer::CLOSE_GRACE;
use crate::ws::{self, Decoder, Incoming, ReadError};

/// Messages read and handled in one go before the writing side gets a turn.
const MESSAGES_PER_TURN: usize = 64;

/// A message the protocol handles.
#[derive(Debug)]
pub enum Message {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

/// What the protocol makes of a message.
pub enum Step {
    /// Read the next message.
    Continue,
    /// Run this before reading the next message; it resolves to whether to
    /// read on (`false`: the protocol has asked its outbox to close).
    Run(Pin<Box<dyn Future<Output = bool> + Send>>),
    /// End the session and close with this code and reason.
    Close(u16, &'static str),
}

/// The protocol's part of a connection.
///
/// ```
/// use std::sync::Arc;
/// use edge::driver::{Handler, Message, Step};
/// use edge::outbox::{Frame, Outbox, Urgency};
///
/// /// Sends every text back; a binary message ends the session.
/// struct Echo(Arc<Outbox>);
///
/// impl Handler for Echo {
///     fn message(&mut self, message: Message) -> Step {
///         match message {
///             Message::Text(text) => {
///                 let wire = edge::ws::text_frame(&text);
///                 self.0.push(Frame { urgency: Urgency::Essential, wire });
///                 Step::Continue
///             }
///             Message::Binary(_) => Step::Close(1003, "text only"),
///         }
///     }
/// }
/// ```
pub trait Handler: Send {
    /// Handles one message from the client.
    fn message(&mut self, message: Message) -> Step;
}

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Send this close frame (the client's own close, a broken rule, a
    /// protocol's decision).
    Close(u16, &'static str),
    /// Something outside ended the session (shutdown, eviction, join deadline).
    Stopped(StopReason),
    /// The protocol asked its outbox to close after its last words.
    Finishing,
    /// The client is gone, silent, or stopped reading; nothing more to send.
    Gone,
}

/// The clock of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How often the client is pinged.
    pub ping_interval: Duration,
    /// How long the client may send nothing at all (it answers pings).
    pub silence: Duration,
    /// How long one write may stay blocked before the client counts as gone.
    pub stall_timeout: Duration,
    /// With `Some(period)`, once the outbox [batches](Outbox::batch), the
    /// client gets at most one frame a period, its text messages joined by
    /// `\n` (see [`ws::join_text_frames`]).
    pub batch: Option<Duration>,
}

/// [`Timing`] in milliseconds: a quarter of its size in every connection.
#[derive(Debug, Clone, Copy)]
struct Clock {
    ping_ms: u32,
    silence_ms: u32,
    stall_ms: u32,
    /// 0: no batching.
    batch_ms: u32,
}

impl From<Timing> for Clock {
    fn from(timing: Timing) -> Self {
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1);
        Self {
            ping_ms: ms(timing.ping_interval),
            silence_ms: ms(timing.silence),
            stall_ms: ms(timing.stall_timeout),
            batch_ms: timing.batch.map_or(0, ms),
        }
    }
}

impl Clock {
    fn ping_interval(self) -> Duration {
        Duration::from_millis(self.ping_ms.into())
    }

    fn silence(self) -> Duration {
        Duration::from_millis(self.silence_ms.into())
    }

    fn stall_timeout(self) -> Duration {
        Duration::from_millis(self.stall_ms.into())
    }

    fn batch(self) -> Option<Duration> {
        (self.batch_ms > 0).then(|| Duration::from_millis(self.batch_ms.into()))
    }
}

/// Where the writing side stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writing {
    /// Taking frames from the outbox.
    Open,
    /// Writing the close frame; done when it is out and the socket shut.
    Closing,
    /// Nothing more will be written.
    Done,
}

/// One connection: see the module documentation.
pub struct Driver<H> {
    io: Upgraded,
    decoder: Decoder,
    outbox: Arc<Outbox>,
    handler: H,
    control: Control,
    timing: Clock,
    /// The message being handled, when it had to wait.
    running: Option<Pin<Box<dyn Future<Output = bool> + Send>>>,
    timer: Pin<Box<Sleep>>,
    /// Bytes being written, and how many of them are out; empty while idle.
    /// (A batch is bounded by the outbox, far below 4 GiB.)
    out: Vec<u8>,
    written: u32,
    writing: Writing,
    /// When the current write became blocked.
    blocked_since: Option<Moment>,
    ping_due: bool,
    next_ping: Moment,
    last_heard: Moment,
    /// When batching, the earliest time of the next write.
    next_batch: Moment,
    /// When a close frame has to be out by.
    close_by: Option<Moment>,
}

impl<H: Handler> Driver<H> {
    /// Serves `io` for `handler`, writing what `outbox` is given.
    pub fn new(
        io: Upgraded,
        control: Control,
        outbox: Arc<Outbox>,
        handler: H,
        max_frame_bytes: usize,
        timing: Timing,
    ) -> Self {
        let now = Moment::now();
        let next_ping = now.after(timing.ping_interval);
        Self {
            io,
            decoder: Decoder::new(max_frame_bytes).with_deflate(control.deflate),
            outbox,
            handler,
            control,
            timing: Clock::from(timing),
            running: None,
            timer: Box::pin(tokio::time::sleep_until(next_ping.instant())),
            out: Vec::new(),
            written: 0,
            writing: Writing::Open,
            blocked_since: None,
            ping_due: false,
            next_ping,
            last_heard: now,
            next_batch: now,
            close_by: None,
        }
    }

    /// The connection's control (who the client is, its headers).
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// The protocol's part.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The outbox this connection writes.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Serves the client until reading ends, writing meanwhile.
    pub async fn serve(&mut self) -> Ending {
        std::future::poll_fn(|cx| self.poll_serve(cx)).await
    }

    /// Writes what is still queued and the close the outbox was asked for,
    /// giving up after `grace`; call once the protocol has closed the outbox.
    pub async fn finish(&mut self, grace: Duration) {
        let deadline = Moment::now().after(grace);
        let finished = std::future::poll_fn(|cx| {
            if self.poll_write(cx).is_ready() {
                return Poll::Ready(true);
            }
            self.arm(cx, deadline)
        })
        .await;
        if !finished {
            debug!("writer did not finish in time; stopping it");
        }
    }

    /// Points the timer at the nearest of `deadline` and the writing side's
    /// deadlines; `Ready(false)` once `deadline` itself has passed.
    fn arm(&mut self, cx: &mut Context<'_>, deadline: Moment) -> Poll<bool> {
        loop {
            let now = Moment::now();
            if now >= deadline {
                return Poll::Ready(false);
            }
            let nearest = self
                .write_deadline()
                .map_or(deadline, |at| at.min(deadline));
            if now >= nearest {
                // A writing deadline passed: let the writing side see it.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            ready!(self.sleep_until(cx, nearest));
        }
    }

    /// Waits for `at` on the one timer, moving it only when `at` is earlier
    /// than where it stands (or it has fired): a later deadline is simply
    /// checked again when the timer fires early.
    fn sleep_until(&mut self, cx: &mut Context<'_>, at: Moment) -> Poll<()> {
        let at = at.instant();
        if at < self.timer.deadline() || self.timer.is_elapsed() {
            self.timer.as_mut().reset(at);
        }
        self.timer.as_mut().poll(cx)
    }

    /// The nearest deadline of the writing side: a blocked write's stall
    /// limit, the end of a batching period, the close's grace.
    fn write_deadline(&self) -> Option<Moment> {
        let blocked = self
            .blocked_since
            .map(|since| since.after(self.timing.stall_timeout()));
        let batch =
            (self.batching().is_some() && self.out.is_empty() && Moment::now() < self.next_batch)
                .then_some(self.next_batch);
        [blocked, batch, self.close_by].into_iter().flatten().min()
    }

    fn batching(&self) -> Option<Duration> {
        self.timing.batch().filter(|_| self.outbox.is_batching())
    }

    fn poll_serve(&mut self, cx: &mut Context<'_>) -> Poll<Ending> {
        loop {
            if let Poll::Ready(reason) = self.control.poll_left(cx) {
                return Poll::Ready(Ending::Stopped(reason));
            }
            if self.poll_write(cx).is_ready() {
                debug!("the writer ended: the socket failed or a close was sent");
                return Poll::Ready(Ending::Gone);
            }
            if let Poll::Ready(ending) = self.poll_read(cx) {
                return Poll::Ready(ending);
            }
            let now = Moment::now();
            // While a message is being handled nothing is read, so silence
            // is not held against the client.
            let silent_until = self.last_heard.after(self.timing.silence());
            if self.running.is_none() && now >= silent_until {
                info!(client = %self.control.client, "client silent for {:?}; dropping it", self.timing.silence());
                return Poll::Ready(Ending::Gone);
            }
            let join_by = self.control.join_deadline().map(Moment::from_instant);
            if join_by.is_some_and(|at| now >= at) {
                self.control.missed_join_deadline();
                return Poll::Ready(Ending::Stopped(StopReason::JoinDeadline));
            }
            if now >= self.next_ping {
                self.ping_due = true;
                self.next_ping = now.after(self.timing.ping_interval());
                continue;
            }
            let silence = self.running.is_none().then_some(silent_until);
            let nearest = [silence, join_by, self.write_deadline()]
                .into_iter()
                .flatten()
                .fold(self.next_ping, Moment::min);
            if now >= nearest {
                continue;
            }
            if self.sleep_until(cx, nearest).is_pending() {
                return Poll::Pending;
            }
        }
    }

    /// Reads and handles messages until reading must wait; `Ready` when the
    /// session should end.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Ending> {
        let mut handled = 0;
        loop {
            if let Some(running) = &mut self.running {
                let read_on = ready!(running.as_mut().poll(cx));
                self.running = None;
                // The client could not be heard while its message was
                // handled; its silence counts from now.
                self.last_heard = Moment::now();
                if !read_on {
                    return Poll::Ready(Ending::Finishing);
                }
            }
            if handled == MESSAGES_PER_TURN {
                // Let the replies out (and other connections run) before
                // reading more from a client that sends without pause.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            handled += 1;
            let message = match self.decoder.next_message() {
                Ok(Some(message)) => message,
                Ok(None) => match ready!(self.decoder.poll_fill(&mut self.io, cx)) {
                    Ok(0) => {
                        debug!(client = %self.control.client, "connection ended");
                        return Poll::Ready(Ending::Gone);
                    }
                    Ok(_) => {
                        self.last_heard = Moment::now();
                        continue;
                    }
                    Err(error) => {
                        debug!(client = %self.control.client, %error, "connection ended");
                        return Poll::Ready(Ending::Gone);
                    }
                },
                Err(error) => return Poll::Ready(self.broken(&error)),
            };
            let message = match message {
                Incoming::Text(text) => Message::Text(text),
                Incoming::Binary(bytes) => Message::Binary(bytes),
                Incoming::Ping(payload) => {
                    self.outbox.push(Frame {
                        urgency: Urgency::Essential,
                        wire: ws::pong_frame(&payload),
                    });
                    continue;
                }
                Incoming::Pong => continue,
                // The client's close is answered by echoing its code (RFC 6455 5.5.1).
                Incoming::Close(code) => {
                    return Poll::Ready(Ending::Close(code.unwrap_or(ws::CLOSE_NORMAL), ""));
                }
            };
            match self.handler.message(message) {
                Step::Continue => {}
                Step::Run(future) => self.running = Some(future),
                Step::Close(code, reason) => return Poll::Ready(Ending::Close(code, reason)),
            }
        }
    }

    fn broken(&self, error: &ReadError) -> Ending {
        match error.close() {
            Some((code, reason)) => {
                info!(client = %self.control.client, "client broke the WebSocket rules ({error:?}); closing with {code}");
                Ending::Close(code, reason)
            }
            None => Ending::Gone,
        }
    }

    /// Writes until writing must wait; `Ready` once nothing more will be
    /// written (the close went out, the socket failed, or the client stopped
    /// reading).
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match self.writing {
                Writing::Done => return Poll::Ready(()),
                Writing::Closing if self.close_by.is_some_and(|by| Moment::now() >= by) => {
                    self.writing = Writing::Done;
                    continue;
                }
                _ => {}
            }
            let written = self.written as usize;
            if written < self.out.len() {
                match Pin::new(&mut self.io).poll_write(cx, &self.out[written..]) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        self.written += u32::try_from(n).unwrap_or(u32::MAX);
                        self.blocked_since = None;
                        continue;
                    }
                    Poll::Ready(result) => return self.failed(result.err()),
                    Poll::Pending => return self.blocked(),
                }
            }
            if !self.out.is_empty() {
                match Pin::new(&mut self.io).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(error)) => return self.failed(Some(error)),
                    Poll::Pending => return self.blocked(),
                }
                // A fresh buffer per write: an idle connection holds none.
                self.out = Vec::new();
                self.written = 0;
                self.blocked_since = None;
            }
            if self.writing == Writing::Closing {
                let _ = ready!(Pin::new(&mut self.io).poll_shutdown(cx));
                self.writing = Writing::Done;
                continue;
            }
            if self.ping_due {
                self.ping_due = false;
                self.out.extend_from_slice(&ws::ping_frame());
                continue;
            }
            let batching = self.batching();
            if batching.is_some() && Moment::now() < self.next_batch {
                return Poll::Pending;
            }
            match ready!(self.outbox.poll_next(cx, &mut self.out)) {
                Next::Frames(_) => {
                    // Asked again: the protocol may have turned batching on
                    // while this connection waited.
                    if let Some(period) = self.batching() {
                        self.out = ws::join_text_frames(&self.out);
                        self.next_batch = Moment::now().after(period);
                    }
                }
                Next::Close(request) => match request.code {
                    Some(code) => {
                        self.out = ws::close_frame(code, &request.reason).to_vec();
                        self.writing = Writing::Closing;
                        self.close_by = Some(Moment::now().after(CLOSE_GRACE * 2));
                    }
                    None => self.writing = Writing::Done,
                },
            }
        }
    }

    /// A write that has to wait: fine, until it has waited the stall limit.
    fn blocked(&mut self) -> Poll<()> {
        let since = *self.blocked_since.get_or_insert_with(Moment::now);
        if since.elapsed() < self.timing.stall_timeout() {
            return Poll::Pending;
        }
        self.failed(Some(io::ErrorKind::TimedOut.into()))
    }

    fn failed(&mut self, error: Option<io::Error>) -> Poll<()> {
        self.writing = Writing::Done;
        if error.is_some_and(|e| e.kind() == io::ErrorKind::TimedOut) {
            info!(client = %self.control.client, "client stopped reading for {:?}; dropping it", self.timing.stall_timeout());
        }
        Poll::Ready(())
    }
}
