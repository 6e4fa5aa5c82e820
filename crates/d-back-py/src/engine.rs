//! One `WebSocketServer`'s engine: start, stop, broadcast, count.
//!
//! Start and stop run on the extension's runtime and report back through the
//! server's mailbox, which has the loop call `done(error, port)`; the Python
//! side turns that into the result of an awaitable, so neither blocks the
//! event loop: stopping waits for connections to close, and those may be
//! waiting on a callback that needs that very loop. Broadcasts are plain calls that queue one frame for
//! every watcher and return at once, without the GIL while they do.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use d_back::{ChatMessage, Hub, PresenceUpdate, RunningServer, Server};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::convert;
use crate::mailbox::{Hook, Mailbox, Outbox};
use crate::provider::{HookFlags, PythonProvider};
use crate::runtime;

/// Extra time the engine gives a callback beyond the Python-side timeout,
/// so the Python side's cancellation (and its clearer message) comes first.
const PATIENCE_MARGIN: Duration = Duration::from_secs(1);

/// The engine behind one Python `WebSocketServer`; creating it starts nothing.
#[pyclass(frozen, module = "d_back._engine")]
pub struct Engine {
    hooks: Arc<HookFlags>,
    state: Arc<Mutex<State>>,
}

/// Where the engine is in its life; start and stop move it along.
enum State {
    /// Not listening.
    Idle,
    /// Binding; the Python side waits for it before it stops.
    Starting,
    /// Listening, with the handle broadcasts go through and the mailbox that
    /// reports the stop.
    Serving {
        server: RunningServer,
        hub: Hub,
        outbox: Arc<Outbox>,
    },
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl Engine {
    fn hub(&self) -> Option<Hub> {
        match &*lock(&self.state) {
            State::Serving { hub, .. } => Some(hub.clone()),
            _ => None,
        }
    }
}

/// A server whose Python object is collected while it serves is stopped, not leaked.
impl Drop for Engine {
    fn drop(&mut self) {
        let state = std::mem::replace(&mut *lock(&self.state), State::Idle);
        if let State::Serving { server, .. } = state {
            runtime::get().spawn(server.shutdown());
        }
    }
}

fn hook_named(name: &str) -> PyResult<Hook> {
    [
        Hook::ServerData,
        Hook::UserData,
        Hook::ValidateUser,
        Hook::ClientId,
        Hook::StaticRequest,
    ]
    .into_iter()
    .find(|hook| hook.name() == name)
    .ok_or_else(|| PyValueError::new_err(format!("no callback called '{name}'")))
}

#[pymethods]
impl Engine {
    #[new]
    fn new() -> Self {
        Self {
            hooks: Arc::new(HookFlags::default()),
            state: Arc::new(Mutex::new(State::Idle)),
        }
    }

    /// Records whether the callback of setter `name` is registered.
    fn set_hook(&self, name: &str, registered: bool) -> PyResult<()> {
        self.hooks.set(hook_named(name)?, registered);
        Ok(())
    }

    /// Binds `host:port` and starts serving; calls `done(error, port)` when
    /// listening (`error` None, `port` the bound port) or when it could not.
    #[pyo3(signature = (host, port, static_dir, mailbox, callback_timeout, done))]
    fn start(
        &self,
        host: String,
        port: u16,
        static_dir: Option<String>,
        mailbox: &Bound<'_, Mailbox>,
        callback_timeout: f64,
        done: Py<PyAny>,
    ) -> PyResult<()> {
        let timeout = Duration::try_from_secs_f64(callback_timeout)
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or_else(|| {
                PyValueError::new_err("callback_timeout must be a positive number of seconds")
            })?;
        let outbox = Arc::clone(&mailbox.get().outbox);
        let provider = PythonProvider::new(
            Arc::clone(&self.hooks),
            Arc::clone(&outbox),
            timeout + PATIENCE_MARGIN,
        );
        let mut builder = Server::builder().host(host).port(port).provider(provider);
        if let Some(dir) = static_dir {
            builder = builder.static_dir(dir);
        }
        {
            let mut state = lock(&self.state);
            if !matches!(*state, State::Idle) {
                return Err(pyo3::exceptions::PyRuntimeError::new_err(
                    "the server is already running; await stop() before starting it again",
                ));
            }
            *state = State::Starting;
        }
        let state = Arc::clone(&self.state);
        runtime::get().spawn(async move {
            match builder.bind().await {
                Ok(server) => {
                    let port = server.local_addr().port();
                    let hub = server.hub();
                    let reporter = Arc::clone(&outbox);
                    *lock(&state) = State::Serving {
                        server,
                        hub,
                        outbox,
                    };
                    reporter.complete(done, None, Some(port));
                }
                Err(error) => {
                    *lock(&state) = State::Idle;
                    outbox.complete(done, Some(error.to_string()), None);
                }
            }
        });
        Ok(())
    }

    /// Stops serving: stops accepting, closes every WebSocket with 1001 and
    /// waits (at most 2 s) for them; then calls `done(None, None)`.
    fn stop(&self, py: Python<'_>, done: Py<PyAny>) -> PyResult<()> {
        let serving = {
            let mut state = lock(&self.state);
            match std::mem::replace(&mut *state, State::Idle) {
                State::Serving { server, outbox, .. } => Some((server, outbox)),
                State::Idle => None,
                State::Starting => {
                    *state = State::Starting;
                    return Err(pyo3::exceptions::PyRuntimeError::new_err(
                        "the server is still starting; wait for start() to bind first",
                    ));
                }
            }
        };
        match serving {
            Some((server, outbox)) => {
                runtime::get().spawn(async move {
                    server.shutdown().await;
                    outbox.complete(done, None, None);
                });
                Ok(())
            }
            None => done.call1(py, (None::<String>, None::<u16>)).map(drop),
        }
    }

    /// Whether the server is listening.
    #[getter]
    fn serving(&self) -> bool {
        matches!(*lock(&self.state), State::Serving { .. })
    }

    /// The bound port while listening, else None.
    #[getter]
    fn local_port(&self) -> Option<u16> {
        match &*lock(&self.state) {
            State::Serving { server, .. } => Some(server.local_addr().port()),
            _ => None,
        }
    }

    /// Open WebSocket connections, joined or not (0 when not listening).
    fn connections(&self) -> usize {
        self.hub().map_or(0, |hub| hub.connections())
    }

    /// `(server_snowflake, watchers)` for every watched Discord server.
    fn watchers(&self) -> Vec<(String, usize)> {
        let Some(hub) = self.hub() else {
            return Vec::new();
        };
        hub.watched_servers()
            .into_iter()
            .map(|server| {
                let watchers = hub.watchers(&server);
                (server, watchers)
            })
            .collect()
    }

    /// Queues a chat line for everyone watching `server`; returns how many.
    fn broadcast_message(
        &self,
        py: Python<'_>,
        server: String,
        uid: String,
        message: String,
        channel: String,
    ) -> usize {
        let Some(hub) = self.hub() else { return 0 };
        py.detach(|| {
            hub.broadcast_message(
                &server,
                ChatMessage {
                    uid,
                    message,
                    channel,
                },
            )
        })
    }

    /// Queues a presence change for everyone watching `server`; returns how many.
    #[pyo3(signature = (server, uid, status, username=None, role_color=None, delete=false))]
    #[allow(clippy::too_many_arguments)]
    fn broadcast_presence(
        &self,
        py: Python<'_>,
        server: String,
        uid: String,
        status: String,
        username: Option<String>,
        role_color: Option<String>,
        delete: bool,
    ) -> PyResult<usize> {
        let status = convert::status(&status).ok_or_else(|| {
            PyValueError::new_err(format!(
                "unknown status '{status}'; use online, idle, dnd or offline"
            ))
        })?;
        let mut update = PresenceUpdate::new(uid, status);
        update.username = username.filter(|name| !name.is_empty());
        update.role_color = role_color.filter(|color| !color.is_empty());
        update.delete = delete;
        let Some(hub) = self.hub() else { return Ok(0) };
        Ok(py.detach(|| hub.broadcast_presence(&server, update)))
    }

    /// Changes the OAuth2 client id of `server` and tells its watchers; returns how many.
    fn broadcast_client_id(&self, py: Python<'_>, server: String, client_id: String) -> usize {
        let Some(hub) = self.hub() else { return 0 };
        py.detach(|| hub.broadcast_client_id(&server, &client_id))
    }
}
