//! A CloudLink server with one extra command, `foo`, as in the CloudLink
//! server's documentation: a client sends `{"cmd": "foo"}` and the server
//! prints `Foobar!`, then answers `I:100 | OK` (with the client's listener).
//!
//! Run it with `cargo run --example foo_command -p cloudlink`, then connect a
//! CloudLink client to ws://127.0.0.1:3000/ (set `PORT` for another port).

use cloudlink::{CloudLink, ExceptionKind, Protocol, Server, StatusCode};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port = std::env::var("PORT").map_or(Ok(3000), |port| port.parse())?;
    let cloudlink = CloudLink::builder()
        .on_command(Protocol::Cl4, "foo", |command| async move {
            println!("Foobar!");
            let server = &command.server;
            server.send_status(
                &command.client,
                StatusCode::Ok,
                None,
                Some(&command.message),
            );
        })
        .on_exception(
            Protocol::Cl4,
            ExceptionKind::InvalidCommand,
            |failure| async move {
                println!(
                    "{:?} sent an invalid command: {}",
                    failure.client, failure.details
                );
            },
        )
        .build();
    let server = Server::builder()
        .host("127.0.0.1")
        .port(port)
        .bind(cloudlink)
        .await?;
    println!("CloudLink with `foo` on {}; Ctrl-C stops it", server.url());
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}
