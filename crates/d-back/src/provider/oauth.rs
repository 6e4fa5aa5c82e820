//! Asking Discord whose OAuth2 access token a browser presented.
//!
//! A browser that wants into a passworded server sends the access token from
//! its Discord login and says which user it is. Only Discord knows whether the
//! token is genuine, so the validator calls `GET {api}/users/@me` with it and
//! returns the id Discord answers with; the [`Store`](super::Store) then
//! compares it with the claimed id and checks membership. Positive answers are
//! cached briefly, so a browser that reconnects does not cost a request each time.
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
#[derive(Debug)]
pub struct OAuthValidator {
    http: reqwest::Client,
    /// Base URL of the Discord API, without a trailing slash (tests point it at a fake).
    api: String,
    /// How long Discord may take to answer before the login is refused.
    timeout: Duration,
    /// Token → (user id, trusted until).
    cache: Mutex<HashMap<String, (String, Instant)>>,
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
        }
    }

    /// The id of the user `token` belongs to, or why that could not be established.
    pub async fn token_owner(&self, token: &str) -> Result<String, ProviderError> {
        let now = Instant::now();
        if let Some((id, until)) = self.cache().get(token)
            && *until > now
        {
            return Ok(id.clone());
        }
        let asked = self
            .http
            .get(format!("{}/users/@me", self.api))
            .bearer_auth(token)
            .timeout(self.timeout)
            .send()
            .await;
        let response = asked.map_err(|e| {
            if e.is_timeout() {
                ProviderError::new(format!(
                    "Discord did not confirm a login within {:?}",
                    self.timeout
                ))
            } else {
                ProviderError::new(format!("could not reach Discord to confirm a login: {e}"))
            }
        })?;
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

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}
