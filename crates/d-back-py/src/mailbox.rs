//! Questions from the engine's threads to the Python event loop, and the answers back.
//!
//! A question is posted from a tokio thread without the GIL. The first one
//! posted while the loop is not yet scheduled to look wakes it (one
//! `call_soon_threadsafe`); the loop then takes every waiting question at
//! once and runs each as a task. Under load that is one wake-up per batch,
//! not per question, and the engine's threads touch the GIL only for the wake.
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

/// One question waiting for the loop.
struct Question {
    hook: Hook,
    args: Args,
    reply: oneshot::Sender<Outcome>,
}

/// The engine's end of a mailbox; cheap to share between tasks.
pub struct Outbox {
    queue: Mutex<Vec<Question>>,
    /// True from the wake-up until the loop takes the queue.
    scheduled: AtomicBool,
    /// Python callable, safe from any thread, that makes the loop call `take`.
    wake: Py<PyAny>,
}

impl Outbox {
    fn queue(&self) -> MutexGuard<'_, Vec<Question>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Posts a question; the receiver gets the answer or the reason there is none.
    pub fn ask(&self, hook: Hook, args: Args) -> oneshot::Receiver<Outcome> {
        let (reply, answer) = oneshot::channel();
        self.queue().push(Question { hook, args, reply });
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            self.wake_loop();
        }
        answer
    }

    /// Asks the loop to take the queue; if it cannot (closed, interpreter
    /// exiting), every waiting question is answered with the reason.
    fn wake_loop(&self) {
        let woken =
            Python::try_attach(|py| self.wake.call0(py).map(drop).map_err(|e| e.to_string()))
                .unwrap_or_else(|| Err("the Python interpreter is shutting down".to_owned()));
        if let Err(reason) = woken {
            self.scheduled.store(false, Ordering::Release);
            for question in self.queue().drain(..) {
                let _ = question.reply.send(Err(format!(
                    "cannot run {} on the Python event loop: {reason}",
                    question.hook.name()
                )));
            }
        }
    }
}

/// The Python side of the questions: created by `WebSocketServer.start()` on
/// its event loop with a callable that schedules a call to [`Mailbox::take`].
#[pyclass(frozen, module = "d_back._engine")]
pub struct Mailbox {
    pub(crate) outbox: Arc<Outbox>,
}

#[pymethods]
impl Mailbox {
    /// `wake` is called from engine threads; it must only schedule work on the loop.
    #[new]
    fn new(wake: Py<PyAny>) -> Self {
        Self {
            outbox: Arc::new(Outbox {
                queue: Mutex::new(Vec::new()),
                scheduled: AtomicBool::new(false),
                wake,
            }),
        }
    }

    /// Every waiting question as `(setter_name, args_tuple, reply)`, oldest first.
    fn take(&self, py: Python<'_>) -> PyResult<Vec<(&'static str, Py<PyAny>, Reply)>> {
        self.outbox.scheduled.store(false, Ordering::Release);
        let questions = std::mem::take(&mut *self.outbox.queue());
        questions
            .into_iter()
            .map(|q| {
                let args = match q.args {
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
                    hook: q.hook,
                    sender: Mutex::new(Some(q.reply)),
                };
                Ok((q.hook.name(), args, reply))
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
