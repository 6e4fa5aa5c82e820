//! Questions from the engine's threads to the Python event loop, and the answers back.
//!
//! A question is posted from a tokio thread without the GIL. The first one
//! posted while the loop is not yet due to look rings a bell: one byte
//! written to a socket the loop watches (`loop.add_reader`). The loop then
//! takes every waiting item at once and runs each question as a task. Under
//! load that is one wake-up per batch, not per question.
//!
//! Engine threads never attach to the interpreter, not even to wake the loop:
//! a thread that attaches while the interpreter finalizes (Ctrl-C at the
//! wrong moment) can abort the process. The same mailbox carries the
//! completions of `start()` and `stop()` back to Python for that reason.
//!
//! Each question carries a [`Reply`]; the Python side answers through it once.
//! A reply dropped unanswered (the loop closed, the task was collected) reads
//! as an error on the Rust side, so no engine task waits forever.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tokio::sync::oneshot;

/// Which callback a question is for, by its d-back 0.0.18 setter name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `on_get_server_data()`.
    ServerData,
    /// `on_get_user_data(server_id)`.
    UserData,
    /// `on_validate_discord_user(token, user_info, server_id)`.
    ValidateUser,
    /// `on_get_client_id(server_id)`.
    ClientId,
    /// `on_static_request(path)`.
    StaticRequest,
}

impl Hook {
    /// The name the Python side dispatches on (the setter's name).
    pub fn name(self) -> &'static str {
        match self {
            Hook::ServerData => "on_get_server_data",
            Hook::UserData => "on_get_user_data",
            Hook::ValidateUser => "on_validate_discord_user",
            Hook::ClientId => "on_get_client_id",
            Hook::StaticRequest => "on_static_request",
        }
    }
}

/// The arguments of a question, converted to Python when the loop takes it.
#[derive(Debug)]
pub enum Args {
    /// No arguments.
    Nothing,
    /// One string: a server snowflake or an HTTP path.
    One(String),
    /// `(token, {"id": ..., "username": ...}, server_id)`.
    Validate {
        token: String,
        user_id: String,
        username: String,
        server: String,
    },
}

/// What the Python side answered.
#[derive(Debug)]
pub enum Answer {
    /// The callback's result as JSON text (made by `json.dumps` on the loop).
    Json(String),
    /// `on_static_request` named a file to serve with this content type.
    File { content_type: String, path: String },
    /// `on_static_request` gave the body itself.
    Body { content_type: String, body: Vec<u8> },
}

/// The outcome the engine waits for: an answer, or why there is none.
pub type Outcome = Result<Answer, String>;

/// Something waiting for the loop.
enum Item {
    /// A question for a callback.
    Question {
        hook: Hook,
        args: Args,
        reply: oneshot::Sender<Outcome>,
    },
    /// `start()` or `stop()` finished: call `done(error, port)` on the loop.
    Done {
        done: Py<PyAny>,
        error: Option<String>,
        port: Option<u16>,
    },
}

/// The socket end the engine writes a byte to, to wake the loop.
#[cfg(unix)]
type Bell = std::os::unix::net::UnixStream;
#[cfg(windows)]
type Bell = std::net::TcpStream;

/// Takes ownership of the socket `fd` (from Python's `socket.detach()`).
fn bell_from(fd: i64) -> PyResult<Bell> {
    #[cfg(unix)]
    let bell = {
        use std::os::fd::FromRawFd;
        let fd = std::os::fd::RawFd::try_from(fd)
            .map_err(|_| pyo3::exceptions::PyValueError::new_err("not a file descriptor"))?;
        // SAFETY: Python detached the socket, so this is now its only owner.
        unsafe { Bell::from_raw_fd(fd) }
    };
    #[cfg(windows)]
    let bell = {
        use std::os::windows::io::FromRawSocket;
        let socket = std::os::windows::io::RawSocket::try_from(fd)
            .map_err(|_| pyo3::exceptions::PyValueError::new_err("not a socket"))?;
        // SAFETY: Python detached the socket, so this is now its only owner.
        unsafe { Bell::from_raw_socket(socket) }
    };
    bell.set_nonblocking(true)?;
    Ok(bell)
}

/// The engine's end of a mailbox; cheap to share between tasks.
pub struct Outbox {
    queue: Mutex<Vec<Item>>,
    /// True from the bell until the loop takes the queue.
    scheduled: AtomicBool,
    bell: Bell,
}

impl Outbox {
    fn queue(&self) -> MutexGuard<'_, Vec<Item>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn post(&self, item: Item) {
        self.queue().push(item);
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            self.ring();
        }
    }

    /// Posts a question; the receiver gets the answer or the reason there is none.
    pub fn ask(&self, hook: Hook, args: Args) -> oneshot::Receiver<Outcome> {
        let (reply, answer) = oneshot::channel();
        self.post(Item::Question { hook, args, reply });
        answer
    }

    /// Has the loop call `done(error, port)`, for `start()` and `stop()`.
    pub fn complete(&self, done: Py<PyAny>, error: Option<String>, port: Option<u16>) {
        self.post(Item::Done { done, error, port });
    }

    /// Wakes the loop. A full socket means a byte is already waiting, which is
    /// as good; a closed one means nobody listens any more, so the waiting
    /// questions are answered with that.
    fn ring(&self) {
        use std::io::Write;
        match (&self.bell).write(&[1]) {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => {
                self.scheduled.store(false, Ordering::Release);
                for item in self.queue().drain(..) {
                    if let Item::Question { hook, reply, .. } = item {
                        let _ = reply.send(Err(format!(
                            "cannot run {} on the Python event loop, which stopped listening ({error})",
                            hook.name()
                        )));
                    }
                }
            }
        }
    }
}

/// The Python side of the mailbox: created by `WebSocketServer.start()` with
/// the write end of a socket pair whose read end its event loop watches.
#[pyclass(frozen, module = "d_back._engine")]
pub struct Mailbox {
    pub(crate) outbox: Arc<Outbox>,
}

#[pymethods]
impl Mailbox {
    /// `bell` is a detached socket (`sock.detach()`); the mailbox owns it from now on.
    #[new]
    fn new(bell: i64) -> PyResult<Self> {
        Ok(Self {
            outbox: Arc::new(Outbox {
                queue: Mutex::new(Vec::new()),
                scheduled: AtomicBool::new(false),
                bell: bell_from(bell)?,
            }),
        })
    }

    /// Runs the finished starts and stops, and returns every waiting question
    /// as `(setter_name, args_tuple, reply)`, oldest first.
    fn take(&self, py: Python<'_>) -> PyResult<Vec<(&'static str, Py<PyAny>, Reply)>> {
        self.outbox.scheduled.store(false, Ordering::Release);
        let items = std::mem::take(&mut *self.outbox.queue());
        let mut questions = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Item::Question { hook, args, reply } => questions.push((hook, args, reply)),
                Item::Done { done, error, port } => {
                    if let Err(err) = done.call1(py, (error, port)) {
                        err.print(py);
                    }
                }
            }
        }
        questions
            .into_iter()
            .map(|(hook, args, reply)| {
                let args = match args {
                    Args::Nothing => ().into_pyobject(py)?.into_any().unbind(),
                    Args::One(one) => (one,).into_pyobject(py)?.into_any().unbind(),
                    Args::Validate {
                        token,
                        user_id,
                        username,
                        server,
                    } => {
                        let user = pyo3::types::PyDict::new(py);
                        user.set_item("id", user_id)?;
                        user.set_item("username", username)?;
                        (token, user, server).into_pyobject(py)?.into_any().unbind()
                    }
                };
                let reply = Reply {
                    hook,
                    sender: Mutex::new(Some(reply)),
                };
                Ok((hook.name(), args, reply))
            })
            .collect()
    }
}

/// The one-time answer to one question.
#[pyclass(frozen, module = "d_back._engine")]
pub struct Reply {
    hook: Hook,
    sender: Mutex<Option<oneshot::Sender<Outcome>>>,
}

impl Reply {
    fn send(&self, outcome: Outcome) {
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(sender) = sender {
            let _ = sender.send(outcome);
        }
    }
}

#[pymethods]
impl Reply {
    /// The callback's result, already turned into JSON text.
    fn json(&self, text: String) {
        self.send(Ok(Answer::Json(text)));
    }

    /// `on_static_request` named a file: serve it with this content type.
    fn file(&self, content_type: String, path: String) {
        self.send(Ok(Answer::File { content_type, path }));
    }

    /// `on_static_request` gave the body itself.
    fn body(&self, content_type: String, body: &Bound<'_, PyBytes>) {
        let body = body.as_bytes().to_vec();
        self.send(Ok(Answer::Body { content_type, body }));
    }

    /// The callback failed; `reason` goes to the log, the browser gets an `error` frame.
    fn fail(&self, reason: String) {
        self.send(Err(reason));
    }

    /// The setter name of the callback this reply is for.
    #[getter]
    fn hook(&self) -> &'static str {
        self.hook.name()
    }
}
