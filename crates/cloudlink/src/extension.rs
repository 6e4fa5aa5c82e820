//! The extension points: custom commands and hooks on a client's life.
//!
//! These are CloudLink 0.2.0's decorators (`on_command`, `on_connect`,
//! `on_error`, `on_exception`, ...) as Rust closures registered on the
//! [`Builder`](crate::Builder). Each hook is an async closure that gets an
//! owned event (the server handle, the client, and what happened), so it can
//! keep them across `.await`s and spawn work of its own. Hooks of one client
//! run in the order its messages arrived; several handlers for one event all
//! run, in the order they were added.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::FutureExt;
use serde_json::Value;
use tracing::warn;

use crate::client::{Client, Protocol};
use crate::handle::CloudLink;

/// A hook's future, boxed so hooks of any shape fit one list.
pub type HookFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A registered hook for events of type `E`.
pub(crate) type Hook<E> = Arc<dyn Fn(E) -> HookFuture + Send + Sync + 'static>;

/// Turns an async closure into a [`Hook`].
pub(crate) fn hook<E, F, Fut>(f: F) -> Hook<E>
where
    F: Fn(E) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move |event| Box::pin(f(event)))
}

/// Something happened to a client (connect, disconnect, protocol identified).
#[derive(Debug, Clone)]
pub struct Event {
    /// The server, for replies and lookups.
    pub server: CloudLink,
    /// The client concerned.
    pub client: Client,
}

/// A client sent a message (to a custom command, or any command for `on_message`).
#[derive(Debug, Clone)]
pub struct Command {
    /// The server, for replies and lookups.
    pub server: CloudLink,
    /// Who sent it.
    pub client: Client,
    /// The whole message object, as received.
    pub message: Value,
}

impl Command {
    /// The message's `listener`, if it had one (copy it into replies).
    pub fn listener(&self) -> Option<&Value> {
        self.message.get("listener")
    }
}

/// What went wrong with a client's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExceptionKind {
    /// An empty frame.
    EmptyMessage,
    /// A frame that is not JSON.
    JsonError,
    /// A message with a missing field or a field of the wrong type.
    ValidationError,
    /// A command the server does not know.
    InvalidCommand,
    /// A command the operator disabled.
    DisabledCommand,
    /// A custom command handler panicked.
    InternalError,
    /// A client sent more messages than its rate allows.
    Overloaded,
}

/// A client's message that could not be handled, and why.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The server, for replies and lookups.
    pub server: CloudLink,
    /// Who sent it.
    pub client: Client,
    /// The kind of problem.
    pub kind: ExceptionKind,
    /// Details: the error map, the parser's message, the command name.
    pub details: Value,
}

/// Every registered hook; built by the [`Builder`](crate::Builder).
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub connect: Vec<Hook<Event>>,
    pub disconnect: Vec<Hook<Event>>,
    pub message: Vec<Hook<Command>>,
    pub error: Vec<Hook<Failure>>,
    pub identified: HashMap<Protocol, Vec<Hook<Event>>>,
    pub protocol_disconnect: HashMap<Protocol, Vec<Hook<Event>>>,
    pub commands: HashMap<(Protocol, String), Vec<Hook<Command>>>,
    pub disabled: HashMap<Protocol, Vec<Hook<Failure>>>,
    pub exceptions: HashMap<(Protocol, ExceptionKind), Vec<Hook<Failure>>>,
}

impl Hooks {
    /// Runs each hook in turn.
    pub async fn run<E: Clone>(hooks: Option<&Vec<Hook<E>>>, event: impl FnOnce() -> E) {
        let Some(hooks) = hooks.filter(|h| !h.is_empty()) else {
            return;
        };
        let event = event();
        for hook in hooks {
            hook(event.clone()).await;
        }
    }

    /// Custom handlers of a command.
    pub fn commands(&self, protocol: Protocol, command: &str) -> Option<&Vec<Hook<Command>>> {
        self.commands
            .get(&(protocol, command.to_owned()))
            .filter(|h| !h.is_empty())
    }

    /// Runs a command's custom handlers in turn, then the `on_message` hooks.
    /// A handler that panics is logged and reported to the `InternalError`
    /// hooks, `panicked` is called (to answer the client), and the others
    /// still run.
    pub async fn command(
        &self,
        server: &CloudLink,
        client: &Client,
        message: Value,
        handlers: Option<&Vec<Hook<Command>>>,
        panicked: impl Fn(),
    ) {
        let command = || Command {
            server: server.clone(),
            client: client.clone(),
            message: message.clone(),
        };
        for handler in handlers.into_iter().flatten() {
            if AssertUnwindSafe(handler(command()))
                .catch_unwind()
                .await
                .is_err()
            {
                let name = message_name(&message);
                warn!(command = name, "a custom command handler panicked");
                panicked();
                self.failure(server, client, ExceptionKind::InternalError, || {
                    Value::String(format!("the handler of {name} panicked"))
                })
                .await;
            }
        }
        Self::run(Some(&self.message), command).await;
    }

    /// Fires `on_error` and, when the protocol is known, the matching
    /// `on_exception` (or `on_disabled_command`) hooks.
    pub async fn failure(
        &self,
        server: &CloudLink,
        client: &Client,
        kind: ExceptionKind,
        details: impl FnOnce() -> Value,
    ) {
        let protocol = client.protocol();
        let specific = protocol.and_then(|p| match kind {
            ExceptionKind::DisabledCommand => self.disabled.get(&p),
            _ => self.exceptions.get(&(p, kind)),
        });
        let general = (kind != ExceptionKind::DisabledCommand).then_some(&self.error);
        let wanted = [general, specific]
            .iter()
            .any(|h| h.is_some_and(|h| !h.is_empty()));
        if !wanted {
            return;
        }
        let failure = Failure {
            server: server.clone(),
            client: client.clone(),
            kind,
            details: details(),
        };
        Self::run(general, || failure.clone()).await;
        Self::run(specific, || failure).await;
    }
}

/// A message's command (CL4 `cmd`) or method (Scratch), for logs.
fn message_name(message: &Value) -> &str {
    message
        .get("cmd")
        .or_else(|| message.get("method"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}
