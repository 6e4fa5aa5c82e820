//! Asking Discord whose OAuth2 access token a browser presented.
//!
//! A browser that wants into a passworded server sends the access token from
//! its Discord login and says which user it is. Only Discord knows whether the
//! token is genuine, so the validator calls `GET {api}/users/@me` with it and
//! returns the id Discord answers with; the [`Store`](super::Store) then
//! compares it with the claimed id and checks membership. Positive answers are
//! cached briefly, so a browser that reconnects does not cost a request each time.
//!
//! When the bot's token is known ([`OAuthValidator::with_bot_token`]) it also
//! answers "is this user a member of that guild" for users the roster does not
//! hold yet (a large guild's members arrive in chunks after the bot connects),
//! by looking the member up (`GET {api}/guilds/{guild}/members/{user}`).
//!
//! Discord may answer 429 (rate limited) to either question; the question is
//! then asked once more after the `retry_after` Discord names, if that still
//! fits in the time limit, because refusing a genuine member for a moment's
//! congestion would send them back to the login page.
//!
//! It fails closed: a timeout, a refused token, or an answer it cannot read is
//! an error, and an error never admits anyone. It never logs a token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::ProviderError;

/// Discord's REST API, version 10.
pub const DISCORD_API: &str = "https://discord.com/api/v10";

/// How long a confirmed token is trusted without asking Discord again.
const CACHE_FOR: Duration = Duration::from_secs(60);
/// Cached tokens kept at most; the cache is emptied when it would grow past this.
const CACHE_LIMIT: usize = 10_000;

/// Checks OAuth2 access tokens against Discord's `/users/@me`.
///
/// ```
/// use std::time::Duration;
/// use d_back::provider::{OAuthValidator, Store};
/// let store = Store::new();
/// store.set_oauth(OAuthValidator::new("https://discord.com/api/v10", Duration::from_secs(5)));
/// ```
pub struct OAuthValidator {
    http: reqwest::Client,
    /// Base URL of the Discord API, without a trailing slash (tests point it at a fake).
    api: String,
    /// How long Discord may take to answer before the login is refused.
    timeout: Duration,
    /// Token → (user id, trusted until).
    cache: Mutex<HashMap<String, (String, Instant)>>,
    /// The bot token (without `Bot `), which may look members up; none: only the roster counts.
    bot_token: Option<String>,
    /// (guild, user) → confirmed member until.
    members: Mutex<HashMap<(String, String), Instant>>,
}

impl std::fmt::Debug for OAuthValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthValidator")
            .field("api", &self.api)
            .field("timeout", &self.timeout)
            .field("looks_up_members", &self.bot_token.is_some())
            .finish_non_exhaustive()
    }
}

/// Discord's body of a 429 answer.
#[derive(Deserialize)]
struct RateLimited {
    /// Seconds to wait.
    retry_after: f64,
}

#[derive(Deserialize)]
struct Me {
    id: String,
}

impl OAuthValidator {
    /// A validator that asks the API at `api` (e.g. [`DISCORD_API`]) and waits at most `timeout`.
    pub fn new(api: impl Into<String>, timeout: Duration) -> Self {
        crate::provider::install_tls_provider();
        Self {
            http: reqwest::Client::new(),
            api: api.into().trim_end_matches('/').to_owned(),
            timeout,
            cache: Mutex::new(HashMap::new()),
            bot_token: None,
            members: Mutex::new(HashMap::new()),
        }
    }

    /// Lets the validator ask Discord whether a user is a member of a guild the
    /// bot is in, for users the roster does not hold yet.
    #[must_use]
    pub fn with_bot_token(mut self, token: impl AsRef<str>) -> Self {
        let token = token.as_ref().trim();
        self.bot_token = Some(token.strip_prefix("Bot ").unwrap_or(token).to_owned());
        self
    }

    /// The id of the user `token` belongs to, or why that could not be established.
    pub async fn token_owner(&self, token: &str) -> Result<String, ProviderError> {
        let now = Instant::now();
        if let Some((id, until)) = self.cache().get(token)
            && *until > now
        {
            return Ok(id.clone());
        }
        let response = self
            .ask("confirm a login", || {
                self.http
                    .get(format!("{}/users/@me", self.api))
                    .bearer_auth(token)
            })
            .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(ProviderError::new(format!(
                "Discord refused an OAuth2 token ({status})"
            )));
        }
        let me: Me = response.json().await.map_err(|e| {
            ProviderError::new(format!(
                "Discord's answer about a login was unreadable: {e}"
            ))
        })?;
        let mut cache = self.cache();
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(token.to_owned(), (me.id.clone(), now + CACHE_FOR));
        Ok(me.id)
    }

    /// Whether `user` is a member of the guild `guild` (snowflakes), asking
    /// Discord as the bot; always `false` without a bot token.
    pub async fn is_guild_member(&self, guild: &str, user: &str) -> Result<bool, ProviderError> {
        let Some(bot) = &self.bot_token else {
            return Ok(false);
        };
        let key = (guild.to_owned(), user.to_owned());
        let now = Instant::now();
        if self.members().get(&key).is_some_and(|until| *until > now) {
            return Ok(true);
        }
        let response = self
            .ask("look a member up", || {
                self.http
                    .get(format!("{}/guilds/{guild}/members/{user}", self.api))
                    .header("Authorization", format!("Bot {bot}"))
            })
            .await?;
        match response.status().as_u16() {
            200..=299 => {}
            // Unknown member, or a guild the bot cannot see: not a member as far as we can tell.
            403 | 404 => return Ok(false),
            status => {
                return Err(ProviderError::new(format!(
                    "Discord would not say whether a user is a guild member ({status})"
                )));
            }
        }
        let mut members = self.members();
        if members.len() >= CACHE_LIMIT {
            members.clear();
        }
        members.insert(key, now + CACHE_FOR);
        Ok(true)
    }

    /// Sends a request built by `request` within the time limit, once more
    /// after Discord's `retry_after` if it answers 429 and the pause still fits.
    async fn ask(
        &self,
        what: &str,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ProviderError> {
        let deadline = Instant::now() + self.timeout;
        let late = || {
            ProviderError::new(format!(
                "Discord did not answer within {:?} (to {what})",
                self.timeout
            ))
        };
        let mut retried = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(late());
            }
            let response = request().timeout(left).send().await.map_err(|e| {
                if e.is_timeout() {
                    late()
                } else {
                    ProviderError::new(format!("could not reach Discord to {what}: {e}"))
                }
            })?;
            if response.status() != reqwest::StatusCode::TOO_MANY_REQUESTS || retried {
                return Ok(response);
            }
            let pause = retry_after(response).await;
            if Instant::now() + pause >= deadline {
                return Err(ProviderError::new(format!(
                    "Discord rate-limited a request (to {what}) for {pause:?}, longer than the time limit"
                )));
            }
            tokio::time::sleep(pause).await;
            retried = true;
        }
    }

    fn members(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Instant>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How long a 429 answer asks us to wait: its body's `retry_after`, else the
/// `Retry-After` header, else a second.
async fn retry_after(response: reqwest::Response) -> Duration {
    let header = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<f64>().ok());
    let body = response
        .json::<RateLimited>()
        .await
        .ok()
        .map(|r| r.retry_after);
    let seconds = body.or(header).unwrap_or(1.0);
    Duration::from_secs_f64(seconds.clamp(0.0, 3600.0))
}
