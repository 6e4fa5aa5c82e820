//! One WebSocket connection's life, from the upgrade to the close.
//!
//! A session is one task: the edge's [`Driver`] reads the client's frames,
//! which are handled in order here, and drains the client's outbox to the
//! socket meanwhile, so everything the client receives (replies and room
//! broadcasts alike) leaves in the order it was queued and a client that stops
//! reading is dropped instead of growing memory. One task with one small
//! future is what keeps thousands of idle clients cheap.
//!
//! Each frame goes through CloudLink 0.2.0's pipeline: empty, not JSON, not an
//! object, which protocol (fixed by the first message that passes one of the
//! two default schemas), then the protocol's own handling (`cl4`,
//! [`crate::scratch`]). A client whose first frame cannot be identified gets
//! the 0.2.0 text and a normal close; an identified client's bad input gets a
//! status code (CL4) or is ignored (Scratch), and the connection goes on. Only
//! a frame over the size limit (1009), text that is not UTF-8 (1007), a
//! WebSocket protocol error (1002), a
//! client far over its message rate (1008), a client that cannot keep up
//! (1013), silence, or shutdown (1001) end it otherwise.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use edge::driver::{Driver, Ending, Handler, Message, Step, Timing};
use edge::outbox::{CloseRequest, Outbox};
use edge::rate::{RateGuard, Verdict};
use edge::writer::CLOSE_GRACE;
use edge::{Connection, Earn, StopReason};
use serde_json::{Value, json};
use tracing::{debug, info};

use crate::cl4::{self, status::StatusCode};
use crate::client::{Client, ClientInfo, Protocol};
use crate::extension::{Event, ExceptionKind, Hooks};
use crate::handle::CloudLink;
use crate::schema::validate;
use crate::scratch;

/// Close code answering a client's own close, and 0.2.0's code for the
/// texts sent before hanging up ("Normal Closure").
pub const CLOSE_NORMAL: u16 = 1000;
/// Close code sent to every client when the server shuts down ("Going Away").
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for a client that keeps sending far over its rate ("Policy Violation").
pub const CLOSE_POLICY: u16 = 1008;

/// Whether to keep reading after a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    /// The connection is closing (its outbox is finishing); read no more.
    Stop,
}

/// Close code for a connection evicted to make room ("Try Again Later").
pub const CLOSE_TRY_LATER: u16 = 1013;

/// Serves one upgraded WebSocket until either side ends it.
///
/// The edge's [`Driver`] reads, writes, pings and keeps the deadlines, all
/// in this one task; this function adds what is CloudLink's: registering the
/// client, its hooks, what each message means (see [`Messages`]), and
/// forgetting the client when it leaves.
pub fn run(
    connection: Connection,
    server: CloudLink,
    peer: ClientInfo,
) -> impl Future<Output = ()> + Send + 'static {
    let settings = server.settings();
    let outbox = Arc::new(Outbox::new(settings.outbox_frames));
    let client = server.new_client(peer, Arc::clone(&outbox));
    let messages = Messages {
        server: server.clone(),
        client,
        earn: connection.control.earn_handle(),
        rate: settings
            .message_rate
            .map(|rate| Box::new(RateGuard::new(rate))),
    };
    let timing = Timing {
        ping_interval: settings.writer.ping_interval,
        silence: settings.writer.ping_interval * 2 + Duration::from_secs(1),
        stall_timeout: settings.writer.stall_timeout,
        batch: settings.writer.batch,
    };
    let mut driver = Driver::new(
        connection.io,
        connection.control,
        outbox,
        messages,
        settings.max_frame_bytes,
        timing,
    );
    // Built before the future below, which then holds only the driver (and
    // a pointer at a time): what an async fn's arguments were would
    // otherwise stay in every idle connection's task beside the driver made
    // from them, and so would the locals of the steps before and after
    // serving, which are boxed for that reason.
    async move {
        if Box::pin(welcome(&mut driver)).await {
            let ending = driver.serve().await;
            Box::pin(farewell(driver, ending)).await;
        }
    }
}

/// Registers the client and runs the connect hooks; `false` (after telling
/// the client) when the server is full.
async fn welcome(driver: &mut Driver<Messages>) -> bool {
    let (server, client) = driver.handler().handles();
    if !server.register(&client) {
        info!(client = %client.address(), "server full; refusing a client");
        server.send_text(&client, "Server is full!");
        client.finish(CLOSE_NORMAL, "");
        driver.finish(writer_grace(&server)).await;
        return false;
    }
    info!(client = %client.address(), uuid = %client.uuid(), "client connected");
    let event = || Event {
        server: server.clone(),
        client: client.clone(),
    };
    Hooks::run(Some(&server.hooks().connect), event).await;
    true
}

/// Forgets the client, runs the disconnect hooks, and closes as `ending`
/// asks once what is queued has been written.
async fn farewell(mut driver: Driver<Messages>, ending: Ending) {
    let (server, client) = driver.handler().handles();
    server.forget(&client);
    let hooks = server.hooks();
    let event = || Event {
        server: server.clone(),
        client: client.clone(),
    };
    Hooks::run(Some(&hooks.disconnect), event).await;
    if let Some(protocol) = client.protocol() {
        Hooks::run(hooks.protocol_disconnect.get(&protocol), event).await;
    }
    // A close of ours goes out after what is already queued (a last status
    // code, say); a client that is gone gets nothing more.
    let close = match ending {
        Ending::Close(code, reason) => Some((code, reason)),
        Ending::Stopped(StopReason::Shutdown) => {
            Some((CLOSE_GOING_AWAY, "server is shutting down"))
        }
        Ending::Stopped(StopReason::Evicted) => {
            Some((CLOSE_TRY_LATER, "server is full; try again later"))
        }
        Ending::Stopped(StopReason::JoinDeadline) => {
            info!(client = %client.address(), "client sent no message in time; closing with 1008");
            Some((CLOSE_POLICY, "no message in time"))
        }
        Ending::Finishing => None,
        Ending::Gone => {
            driver.outbox().close(CloseRequest {
                code: None,
                reason: Cow::Borrowed(""),
            });
            None
        }
    };
    if let Some((code, reason)) = close {
        driver.outbox().finish(CloseRequest::new(code, reason));
    }
    driver.finish(writer_grace(&server)).await;
    let code = close.map(|(code, _)| code);
    info!(client = %client.address(), uuid = %client.uuid(), close_code = code, "client disconnected");
}

/// How long the writer may take to send what is queued and the close.
fn writer_grace(server: &CloudLink) -> Duration {
    server.settings().writer.stall_timeout + CLOSE_GRACE * 2
}

/// CloudLink's part of a connection: each message is checked against the
/// client's rate, then handled in order (see [`Session`]).
struct Messages {
    server: CloudLink,
    client: Client,
    /// Tells the edge this is a real client (its protocol is known).
    earn: Earn,
    /// The client's message allowance, when limited; boxed, as it is six
    /// times the size of a pointer and the idle connection's task is sized in
    /// steps of 128 bytes (see `edge::driver`).
    rate: Option<Box<RateGuard>>,
}

impl Messages {
    /// The server and the client, for what the session does around serving.
    fn handles(&self) -> (CloudLink, Client) {
        (self.server.clone(), self.client.clone())
    }
}

impl Handler for Messages {
    fn message(&mut self, message: Message) -> Step {
        let text = match message {
            Message::Text(text) => text,
            // 0.2.0 decodes binary frames as JSON too.
            Message::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        };
        let (server, client, earn) = (self.server.clone(), self.client.clone(), self.earn.clone());
        match self
            .rate
            .as_deref_mut()
            .map_or(Verdict::Handle, RateGuard::check)
        {
            Verdict::Handle => {}
            Verdict::Refuse { tell: false } => return Step::Continue,
            Verdict::Refuse { tell: true } => {
                return Step::Run(Box::pin(async move {
                    let session = Session {
                        server: &server,
                        client: &client,
                        earn: &earn,
                    };
                    session.over_rate().await;
                    true
                }));
            }
            Verdict::Close => {
                info!(client = %self.client.address(), "client kept sending over its rate; closing with 1008");
                return Step::Close(CLOSE_POLICY, "sending too fast");
            }
        }
        Step::Run(Box::pin(async move {
            let mut session = Session {
                server: &server,
                client: &client,
                earn: &earn,
            };
            session.frame(&text).await == Flow::Continue
        }))
    }
}

/// What handling one message needs.
struct Session<'a> {
    server: &'a CloudLink,
    client: &'a Client,
    /// Tells the edge this is a real client (its protocol is known).
    earn: &'a Earn,
}

impl Session<'_> {
    async fn over_rate(&self) {
        if self.client.protocol() == Some(Protocol::Cl4) {
            let details =
                json!("Too many messages: slow down. Messages are not handled until you do.");
            cl4::reject(self.client, StatusCode::Refused, &details);
        }
        self.failure(ExceptionKind::Overloaded, json!("message rate exceeded"))
            .await;
    }

    async fn failure(&self, kind: ExceptionKind, details: Value) {
        self.server
            .hooks()
            .failure(self.server, self.client, kind, || details)
            .await;
    }

    /// 0.2.0's answer to an unidentified client's bad first frame: the reason
    /// as a text, then a normal close with it.
    fn refuse_unidentified(&self, why: &'static str) -> Flow {
        self.server.send_text(self.client, why);
        self.client.finish(CLOSE_NORMAL, why);
        Flow::Stop
    }

    /// Handles one text frame.
    async fn frame(&mut self, text: &str) -> Flow {
        let protocol = self.client.protocol();
        if text.is_empty() {
            self.failure(ExceptionKind::EmptyMessage, json!("Empty message"))
                .await;
            return match protocol {
                None => self.refuse_unidentified("Empty message"),
                Some(Protocol::Cl4) => {
                    let details = json!("Your client has sent an empty message.");
                    cl4::reject(self.client, StatusCode::EmptyPacket, &details);
                    Flow::Continue
                }
                Some(Protocol::Scratch) => Flow::Continue,
            };
        }
        let error = match serde_json::from_str::<Value>(text) {
            Ok(message) => return self.message(message).await,
            Err(error) => error,
        };
        // Scratch clients may send several messages in one frame, one a line.
        if protocol != Some(Protocol::Cl4)
            && let Some(lines) = json_lines(text)
        {
            for message in lines {
                if self.message(message).await == Flow::Stop {
                    return Flow::Stop;
                }
            }
            return Flow::Continue;
        }
        let details = json!(format!("A JSON error was raised: {error}"));
        self.failure(ExceptionKind::JsonError, details.clone())
            .await;
        match protocol {
            None => self.refuse_unidentified("Invalid JSON"),
            Some(Protocol::Cl4) => {
                cl4::reject(self.client, StatusCode::JsonError, &details);
                Flow::Continue
            }
            Some(Protocol::Scratch) => Flow::Continue,
        }
    }

    /// Handles one decoded message.
    async fn message(&mut self, message: Value) -> Flow {
        let protocol = match self.client.protocol() {
            Some(protocol) => protocol,
            None => match identify(&message) {
                Some(protocol) => {
                    self.identified(protocol).await;
                    protocol
                }
                None => {
                    self.failure(
                        ExceptionKind::ValidationError,
                        json!("Unable to identify protocol"),
                    )
                    .await;
                    return self.refuse_unidentified("Unable to identify protocol");
                }
            },
        };
        match protocol {
            Protocol::Cl4 if !message.is_object() => {
                let details = json!({"message": ["must be of dict type"]});
                cl4::reject(self.client, StatusCode::Syntax, &details);
                self.failure(ExceptionKind::ValidationError, details).await;
                Flow::Continue
            }
            Protocol::Cl4 => {
                cl4::handle(self.server, self.client, message).await;
                Flow::Continue
            }
            Protocol::Scratch => scratch::handle(self.server, self.client, message).await,
        }
    }

    async fn identified(&self, protocol: Protocol) {
        self.client.set_protocol(protocol);
        // Scratch clients split frames on newlines; CL4 clients parse each
        // frame as one message, so only Scratch connections are batched.
        if protocol == Protocol::Scratch && self.server.settings().writer.batch.is_some() {
            self.client.batch_frames();
        }
        self.earn.earn();
        debug!(uuid = %self.client.uuid(), %protocol, "protocol identified");
        if protocol == Protocol::Cl4 {
            let mut state = self.server.registry().lock();
            cl4::rooms::identified(&mut state, self.client);
        }
        let hooks = self.server.hooks();
        Hooks::run(hooks.identified.get(&protocol), || Event {
            server: self.server.clone(),
            client: self.client.clone(),
        })
        .await;
    }
}

/// Which protocol a first message speaks: the first default schema it
/// passes, CL4 before Scratch.
fn identify(message: &Value) -> Option<Protocol> {
    let object = message.as_object()?;
    if validate(object, cl4::DEFAULT_SCHEMA).is_ok() {
        Some(Protocol::Cl4)
    } else if validate(object, scratch::DEFAULT_SCHEMA).is_ok()
        || scratch::is_handshake_with_bad_name(object)
    {
        Some(Protocol::Scratch)
    } else {
        None
    }
}

/// Several JSON documents, one a line; `None` unless every non-blank line is one.
fn json_lines(text: &str) -> Option<Vec<Value>> {
    if !text.contains('\n') {
        return None;
    }
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).ok())
        .collect()
}

impl CloudLink {
    /// Takes a leaving client out of its rooms (announcing a named CL4
    /// client's departure) and out of the registry.
    pub(crate) fn forget(&self, client: &Client) {
        let mut state = self.registry().lock();
        match client.protocol() {
            Some(Protocol::Cl4) => cl4::rooms::leave_all(&mut state, client),
            Some(Protocol::Scratch) => scratch::leave_all(&mut state, client),
            None => {}
        }
        state.unregister(client);
    }
}
