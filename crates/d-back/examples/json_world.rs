//! Embedding d-back in your own program: serve Discord servers and users read
//! from a JSON file, and broadcast live changes from your own code.
//!
//! ```text
//! cargo run --example json_world -- examples/world.json
//! ```
//!
//! Then open http://localhost:3000/ or point the d-zone client at
//! `ws://localhost:3000/`. Every few seconds "ada" changes status and says
//! something, as a bot relaying Discord events would make happen.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use d_back::{
    ChatMessage, DataProvider, PresenceUpdate, ProviderError, Roster, Server, ServerList, Status,
    async_trait,
};
use serde::Deserialize;

/// The file's shape: the same as the built-in world's data.
#[derive(Debug, Deserialize)]
struct JsonWorld {
    servers: ServerList,
    users: indexmap::IndexMap<String, Roster>,
}

#[async_trait]
impl DataProvider for JsonWorld {
    async fn servers(&self) -> Result<ServerList, ProviderError> {
        Ok(self.servers.clone())
    }

    async fn users(&self, server: &str) -> Result<Roster, ProviderError> {
        self.users
            .get(server)
            .cloned()
            .ok_or_else(|| ProviderError::new(format!("no users listed for server {server}")))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path: PathBuf = std::env::args_os()
        .nth(1)
        .unwrap_or_else(|| "examples/world.json".into())
        .into();
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let world: JsonWorld = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid world file", path.display()))?;
    let guild = world
        .servers
        .iter()
        .find(|(_, info)| info.default)
        .map(|(snowflake, _)| snowflake.clone())
        .context("the world file needs one server with \"default\": true")?;
    let speaker = world
        .users
        .get(&guild)
        .and_then(|roster| roster.keys().next().cloned())
        .context("the default server needs at least one user")?;

    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let server = Server::builder().port(port).provider(world).bind().await?;
    println!(
        "serving {} on http://{}/",
        path.display(),
        server.local_addr()
    );

    // Your bot would call these when Discord tells it something happened.
    let hub = server.hub();
    let events = tokio::spawn(async move {
        let statuses = [Status::Idle, Status::Dnd, Status::Online];
        for round in 0.. {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let status = statuses[round % statuses.len()];
            hub.broadcast_presence(&guild, PresenceUpdate::new(&speaker, status));
            hub.broadcast_message(
                &guild,
                ChatMessage {
                    uid: speaker.clone(),
                    message: format!("I am {status} now"),
                    channel: "general".into(),
                },
            );
        }
    });

    tokio::signal::ctrl_c().await?;
    events.abort();
    server.shutdown().await;
    Ok(())
}
