//! The engine's data provider for a Python `WebSocketServer`: its callbacks
//! when registered, the built-in world otherwise.
//!
//! Which callbacks are registered is read on every question (the setters may
//! be called while the server runs, as in d-back 0.0.18), from flags the
//! setters keep, so a missing callback costs no trip to Python. As in 0.0.18
//! the built-in world's activity runs only when neither the server nor the
//! user callback is registered.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

use d_back::{
    DataProvider, DiscordUser, Hub, MockWorld, ProviderError, Roster, ServerList, StaticResponse,
    async_trait,
};

use crate::convert;
use crate::mailbox::{Answer, Args, Hook, Outbox};

/// Which of the five callbacks are registered, shared with the Python setters.
#[derive(Debug, Default)]
pub struct HookFlags {
    server_data: AtomicBool,
    user_data: AtomicBool,
    validate_user: AtomicBool,
    client_id: AtomicBool,
    static_request: AtomicBool,
}

impl HookFlags {
    fn flag(&self, hook: Hook) -> &AtomicBool {
        match hook {
            Hook::ServerData => &self.server_data,
            Hook::UserData => &self.user_data,
            Hook::ValidateUser => &self.validate_user,
            Hook::ClientId => &self.client_id,
            Hook::StaticRequest => &self.static_request,
        }
    }

    /// Records whether the callback for `hook` is registered.
    pub fn set(&self, hook: Hook, registered: bool) {
        self.flag(hook).store(registered, Ordering::Release);
    }

    /// Whether the callback for `hook` is registered.
    pub fn has(&self, hook: Hook) -> bool {
        self.flag(hook).load(Ordering::Acquire)
    }
}

/// A call to `on_get_server_data` that several engine tasks wait for.
type SharedServerList = Shared<BoxFuture<'static, Result<Arc<ServerList>, ProviderError>>>;

/// Answers the engine's questions for one running server.
pub struct PythonProvider {
    hooks: Arc<HookFlags>,
    outbox: Arc<Outbox>,
    world: MockWorld,
    /// How long the engine waits for an answer before giving up on it. The
    /// Python side cancels the callback a little earlier; this covers a loop
    /// that is blocked and cannot even do that.
    patience: Duration,
    /// The `on_get_server_data` call under way, if any.
    server_list: Mutex<Option<SharedServerList>>,
}

impl PythonProvider {
    /// A provider asking the callbacks flagged in `hooks` through `outbox`.
    pub fn new(hooks: Arc<HookFlags>, outbox: Arc<Outbox>, patience: Duration) -> Self {
        Self {
            hooks,
            outbox,
            world: MockWorld::new(),
            patience,
            server_list: Mutex::new(None),
        }
    }

    async fn ask(&self, hook: Hook, args: Args) -> Result<Answer, ProviderError> {
        ask(&self.outbox, self.patience, hook, args).await
    }

    async fn ask_json(&self, hook: Hook, args: Args) -> Result<String, ProviderError> {
        json_of(hook, self.ask(hook, args).await?)
    }

    /// Joins the `on_get_server_data` call under way, or starts one.
    fn server_list_call(&self) -> SharedServerList {
        let mut slot = self.server_list.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(call) = slot.as_ref() {
            return call.clone();
        }
        let outbox = Arc::clone(&self.outbox);
        let patience = self.patience;
        let call = async move {
            let answer = ask(&outbox, patience, Hook::ServerData, Args::Nothing).await?;
            let json = json_of(Hook::ServerData, answer)?;
            convert::server_list(&json)
                .map(Arc::new)
                .map_err(ProviderError::new)
        }
        .boxed()
        .shared();
        *slot = Some(call.clone());
        call
    }

    /// Forgets `call` once it is answered, so the next question asks afresh.
    fn forget(&self, call: &SharedServerList) {
        let mut slot = self.server_list.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|current| current.ptr_eq(call)) {
            *slot = None;
        }
    }
}

/// Posts a question and waits, at most `patience`, for its answer.
async fn ask(
    outbox: &Outbox,
    patience: Duration,
    hook: Hook,
    args: Args,
) -> Result<Answer, ProviderError> {
    {
        let answer = outbox.ask(hook, args);
        match tokio::time::timeout(patience, answer).await {
            Ok(Ok(Ok(answer))) => Ok(answer),
            Ok(Ok(Err(reason))) => Err(ProviderError::new(reason)),
            Ok(Err(_)) => Err(ProviderError::new(format!(
                "{} was never answered (did the event loop that started the server stop?)",
                hook.name()
            ))),
            Err(_) => Err(ProviderError::new(format!(
                "{} did not answer within {:.1} s (is the event loop blocked?)",
                hook.name(),
                patience.as_secs_f64()
            ))),
        }
    }
}

/// The JSON text of an answer that must be one.
fn json_of(hook: Hook, answer: Answer) -> Result<String, ProviderError> {
    match answer {
        Answer::Json(json) => Ok(json),
        _ => Err(ProviderError::new(format!(
            "{} answered with a file or body",
            hook.name()
        ))),
    }
}

#[async_trait]
impl DataProvider for PythonProvider {
    async fn servers(&self) -> Result<ServerList, ProviderError> {
        if !self.hooks.has(Hook::ServerData) {
            return self.world.servers().await;
        }
        let call = self.server_list_call();
        let answer = call.clone().await;
        self.forget(&call);
        answer.map(|list| list.as_ref().clone())
    }

    async fn users(&self, server: &str) -> Result<Roster, ProviderError> {
        if !self.hooks.has(Hook::UserData) {
            return self.world.users(server).await;
        }
        let json = self
            .ask_json(Hook::UserData, Args::One(server.to_owned()))
            .await?;
        convert::roster(&json).map_err(ProviderError::new)
    }

    async fn validate_discord_user(
        &self,
        server: &str,
        token: &str,
        user: &DiscordUser,
    ) -> Result<bool, ProviderError> {
        if !self.hooks.has(Hook::ValidateUser) {
            // Fail closed: only the built-in OAuth2 demo server admits anyone.
            return self.world.validate_discord_user(server, token, user).await;
        }
        let args = Args::Validate {
            token: token.to_owned(),
            user_id: user.id.clone(),
            username: user.username.clone(),
            server: server.to_owned(),
        };
        let json = self.ask_json(Hook::ValidateUser, args).await?;
        convert::verdict(&json).map_err(ProviderError::new)
    }

    async fn client_id(&self, server: &str) -> Result<Option<String>, ProviderError> {
        if !self.hooks.has(Hook::ClientId) {
            return Ok(None);
        }
        let json = self
            .ask_json(Hook::ClientId, Args::One(server.to_owned()))
            .await?;
        convert::client_id(&json).map_err(ProviderError::new)
    }

    async fn static_response(&self, path: &str) -> Option<StaticResponse> {
        if !self.hooks.has(Hook::StaticRequest) {
            return None;
        }
        match self
            .ask(Hook::StaticRequest, Args::One(path.to_owned()))
            .await
        {
            Ok(Answer::Json(_)) => None,
            Ok(Answer::Body { content_type, body }) => Some(StaticResponse::ok(content_type, body)),
            Ok(Answer::File { content_type, path }) => Some(match tokio::fs::read(&path).await {
                Ok(body) => StaticResponse::ok(content_type, body),
                Err(error) => {
                    tracing::warn!(%error, path, "on_static_request named a file that cannot be read");
                    not_found()
                }
            }),
            Err(error) => {
                tracing::warn!(%error, path, "on_static_request failed");
                Some(StaticResponse {
                    status: 500,
                    content_type: "text/plain; charset=utf-8".to_owned(),
                    body: "Internal Server Error".into(),
                })
            }
        }
    }

    fn activity(
        &self,
        server: &str,
        hub: Hub,
    ) -> Option<futures_util::future::BoxFuture<'static, ()>> {
        if self.hooks.has(Hook::ServerData) || self.hooks.has(Hook::UserData) {
            return None;
        }
        self.world.activity(server, hub)
    }
}

/// What d-back 0.0.18 answers for a file `on_static_request` named but that is missing.
fn not_found() -> StaticResponse {
    StaticResponse {
        status: 404,
        content_type: "text/html; charset=utf-8".to_owned(),
        body: "<h1>404 Not Found</h1><p>The requested file was not found.</p>".into(),
    }
}
