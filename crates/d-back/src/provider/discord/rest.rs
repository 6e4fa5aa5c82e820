//! The two questions the bot asks Discord's REST API before and around its
//! gateway connection: how to connect (`GET /gateway/bot`: how many shards,
//! how many sessions may start and how many at once) and, when Discord refuses
//! the privileged intents, which of the switches are off
//! (`GET /applications/@me`).
//!
//! These go through reqwest against the configured API base (`--discord-api-url`)
//! rather than through twilight-http: its only base-URL knob swaps the host and
//! keeps Discord's `/api/v10` path, so the operator's URL (and the test fake's)
//! could not be honoured as written, and two calls do not need its rate-limit
//! machinery. The answers are decoded into twilight-model's types, which the
//! gateway client takes as they are.

use std::time::Duration;

use serde::Deserialize;
use twilight_model::gateway::connection_info::BotConnectionInfo;

use super::{DiscordConfig, DiscordError, PRIVILEGED};

/// How long Discord may take to answer one of these questions.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// The bot's REST client: the API base and the bot's credentials.
#[derive(Clone)]
pub(super) struct BotApi {
    http: reqwest::Client,
    /// Base URL without a trailing slash, e.g. `https://discord.com/api/v10`.
    api: String,
    /// The bot token without the `Bot ` prefix; only ever sent in the `Authorization` header.
    token: String,
}

impl BotApi {
    pub(super) fn new(config: &DiscordConfig) -> Self {
        Self {
            http: reqwest::Client::new(),
            api: config.api_url.clone(),
            token: config.token.clone(),
        }
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.api))
            .header("Authorization", format!("Bot {}", self.token))
            .timeout(ASK_TIMEOUT)
    }

    /// How Discord wants this bot to connect: shard count and session start limits.
    pub(super) async fn gateway_bot(&self) -> Result<BotConnectionInfo, DiscordError> {
        let url = format!("{}/gateway/bot", self.api);
        let unreachable = |reason: String| DiscordError::Unreachable {
            url: url.clone(),
            reason,
        };
        let response = self
            .get("/gateway/bot")
            .send()
            .await
            .map_err(|e| unreachable(without_url(&e)))?;
        match response.status().as_u16() {
            200..=299 => {}
            401 => return Err(DiscordError::TokenRejected),
            status => {
                return Err(unreachable(format!(
                    "Discord answered {status}; is --discord-api-url the API base (e.g. https://discord.com/api/v10)?"
                )));
            }
        }
        response
            .json::<BotConnectionInfo>()
            .await
            .map_err(|e| unreachable(format!("the answer was not gateway information: {e}")))
    }

    /// The privileged intents that are switched off, to name exactly those
    /// switches; empty when Discord would not say.
    pub(super) async fn missing_intents(&self) -> Vec<&'static str> {
        #[derive(Deserialize)]
        struct Application {
            #[serde(default)]
            flags: u64,
        }
        let asked = self.get("/applications/@me").send().await;
        let Ok(response) = asked.and_then(reqwest::Response::error_for_status) else {
            return Vec::new();
        };
        let Ok(app) = response.json::<Application>().await else {
            return Vec::new();
        };
        PRIVILEGED
            .iter()
            .filter(|(_, full, limited)| app.flags & (full | limited) == 0)
            .map(|(name, _, _)| *name)
            .collect()
    }
}

/// A reqwest error's words without its URL (the URL is named separately).
fn without_url(error: &reqwest::Error) -> String {
    let mut error_source: Option<&dyn std::error::Error> = std::error::Error::source(error);
    let mut words = String::from("no answer");
    while let Some(cause) = error_source {
        words = cause.to_string();
        error_source = cause.source();
    }
    if error.is_timeout() {
        words = format!("no answer within {ASK_TIMEOUT:?}");
    }
    words
}
