//! Who may open a WebSocket: connection caps, browser origins, and the
//! client's real address behind a reverse proxy.
//!
//! Every check happens before the upgrade, so a refused client costs one small
//! HTTP response and never a session. (Limits on connections of every kind,
//! upgraded or not, are the [`gate`](crate::gate)'s; this counts WebSockets by
//! the client's real address, which behind a proxy only the request tells.) A
//! proxy's forwarding header is believed only when the TCP peer is one of the
//! operator's trusted proxies; from anyone else it is ignored, so a client
//! cannot dodge the per-address limit or forge its address in the logs.
//!
//! An origin allow-list never locks out the server's own pages: a page served
//! from this very server (its `Origin` names the host and port the request was
//! sent to, in `Host`) may always connect. A browser sets both headers itself,
//! so a page elsewhere cannot pass for one of ours, unless its own host name
//! is made to resolve to this server (DNS rebinding); such a page then gets
//! what any client connecting directly gets. A client that is not a browser
//! can send any headers it likes, which is why the origin check was never a
//! defence against it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use ipnet::IpNet;

/// Access rules as the operator configured them.
#[derive(Debug, Clone, Default)]
pub struct AccessRules {
    /// Most WebSocket connections open at once; more get HTTP 503.
    pub max_connections: Option<usize>,
    /// Most connections of any kind (WebSocket, HTTP, TLS handshakes) from one
    /// client address; more get HTTP 429, or are closed at once when nothing
    /// can be said (TLS). `None` picks a quarter of the connection budget, so
    /// that no single address can take the server's file descriptors.
    pub max_connections_per_ip: Option<usize>,
    /// Most TLS handshakes in flight from one client address (default 16).
    pub max_tls_handshakes_per_ip: Option<usize>,
    /// Browser origins allowed to open a WebSocket (empty: any). Others get HTTP 403.
    pub allowed_origins: Vec<String>,
    /// Reverse proxies whose forwarding header is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// The header a trusted proxy puts the client address in (default `X-Forwarded-For`).
    pub real_ip_header: Option<HeaderName>,
}

/// Why a WebSocket was refused before the upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections` reached.
    Full,
    /// The per-address limit reached.
    TooManyFromAddress,
    /// The browser page's origin is not allowed.
    Origin,
}

impl Refusal {
    /// Label for metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Full => "max_connections",
            Refusal::TooManyFromAddress => "per_ip",
            Refusal::Origin => "origin",
        }
    }

    /// The HTTP answer: a status and a sentence an operator can act on.
    pub fn response(self) -> (StatusCode, &'static str) {
        match self {
            Refusal::Full => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is at its connection limit; try again later\n",
            ),
            Refusal::TooManyFromAddress => (
                StatusCode::TOO_MANY_REQUESTS,
                "too many connections from your address\n",
            ),
            Refusal::Origin => (
                StatusCode::FORBIDDEN,
                "this page's origin may not connect to this server\n",
            ),
        }
    }
}

/// The live state behind [`AccessRules`].
#[derive(Debug)]
pub struct Admission {
    rules: AccessRules,
    /// Normalised allowed origins.
    origins: Vec<String>,
    /// Open WebSockets in total and per client address.
    open: Mutex<OpenCounts>,
}

#[derive(Debug, Default)]
struct OpenCounts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Held by a session for its life; gives its place back when dropped.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    address: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.admission.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.by_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.by_address.remove(&self.address);
            }
        }
    }
}

impl Admission {
    pub fn new(rules: AccessRules) -> Self {
        let origins = rules.allowed_origins.iter().map(|o| normalise(o)).collect();
        Self {
            rules,
            origins,
            open: Mutex::new(OpenCounts::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OpenCounts> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The client's address: the TCP peer, or what a trusted proxy says it forwarded.
    pub fn client_address(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer_ip = peer.ip();
        if !self.is_trusted(peer_ip) {
            return peer_ip;
        }
        let name = self
            .rules
            .real_ip_header
            .clone()
            .unwrap_or(HeaderName::from_static("x-forwarded-for"));
        // Proxies append, so the right-most address not of a trusted proxy is
        // the one the nearest untrusted hop connected from.
        let mut forwarded: Vec<IpAddr> = Vec::new();
        for value in headers.get_all(&name) {
            let Ok(text) = value.to_str() else {
                return peer_ip;
            };
            for part in text.split(',') {
                match parse_address(part.trim()) {
                    Some(ip) => forwarded.push(ip),
                    None => return peer_ip,
                }
            }
        }
        forwarded
            .iter()
            .rev()
            .find(|ip| !self.is_trusted(**ip))
            .or(forwarded.first())
            .copied()
            .unwrap_or(peer_ip)
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.rules
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&ip))
    }

    /// Whether a browser page at this request's `Origin` may connect: one of
    /// the allowed origins, or the server's own (the page's host and port are
    /// the request's `Host`).
    ///
    /// Requests without an `Origin` are not from a browser page (browsers
    /// always send one on a WebSocket handshake) and are allowed; an `Origin`
    /// that is not text is not one a browser sends, and is refused.
    pub fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        if self.origins.is_empty() {
            return true;
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let origin = normalise(origin);
        if self.origins.contains(&origin) {
            return true;
        }
        headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .is_some_and(|host| is_own_origin(&origin, host))
    }

    /// Takes a connection place for `address`, or says why not.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Ticket, Refusal> {
        let mut open = self.lock();
        if self
            .rules
            .max_connections
            .is_some_and(|max| open.total >= max)
        {
            return Err(Refusal::Full);
        }
        let from_address = open.by_address.get(&address).copied().unwrap_or(0);
        if self
            .rules
            .max_connections_per_ip
            .is_some_and(|max| from_address >= max)
        {
            return Err(Refusal::TooManyFromAddress);
        }
        open.total += 1;
        *open.by_address.entry(address).or_insert(0) += 1;
        Ok(Ticket {
            admission: Arc::clone(self),
            address,
        })
    }
}

fn normalise(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Whether a normalised `origin` (`scheme://host[:port]`) names the same host
/// and port as the request's `Host`, a port left out meaning the scheme's
/// default on either side.
fn is_own_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme {
        "http" | "ws" => ":80",
        "https" | "wss" => ":443",
        _ => return false,
    };
    let host = host.trim().to_ascii_lowercase();
    let without_default = |authority: &str| -> String {
        authority
            .strip_suffix(default_port)
            .unwrap_or(authority)
            .to_owned()
    };
    !authority.is_empty() && without_default(authority) == without_default(&host)
}

/// Parses `1.2.3.4`, `1.2.3.4:5`, `::1` or `[::1]:5`.
fn parse_address(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn behind_proxy() -> Admission {
        Admission::new(AccessRules {
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
            ..AccessRules::default()
        })
    }

    #[test]
    fn the_forwarding_header_is_believed_only_from_trusted_proxies() {
        let admission = behind_proxy();
        let forwarded = headers(&[("x-forwarded-for", "203.0.113.9")]);
        let proxy: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.7:5000".parse().unwrap();
        assert_eq!(
            admission.client_address(proxy, &forwarded),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            admission.client_address(stranger, &forwarded),
            stranger.ip()
        );
    }

    #[test]
    fn a_spoofed_left_part_does_not_win() {
        let admission = behind_proxy();
        // The client sent "1.1.1.1" itself; our proxy appended the real address.
        let forwarded = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.0.0.2")]);
        let proxy: SocketAddr = "10.0.0.1:1".parse().unwrap();
        assert_eq!(
            admission.client_address(proxy, &forwarded),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        let garbage = headers(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(admission.client_address(proxy, &garbage), proxy.ip());
    }

    #[test]
    fn a_custom_header_names_the_address() {
        let admission = Admission::new(AccessRules {
            trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
            real_ip_header: Some(HeaderName::from_static("x-real-ip")),
            ..AccessRules::default()
        });
        let proxy: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let h = headers(&[("x-real-ip", "[2001:db8::1]:443")]);
        assert_eq!(
            admission.client_address(proxy, &h),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn places_are_counted_and_given_back() {
        let admission = Arc::new(Admission::new(AccessRules {
            max_connections: Some(3),
            max_connections_per_ip: Some(2),
            ..AccessRules::default()
        }));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = admission.admit(a).unwrap();
        let _second = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).unwrap_err(), Refusal::TooManyFromAddress);
        let _third = admission.admit(b).unwrap();
        assert_eq!(admission.admit(b).unwrap_err(), Refusal::Full);
        drop(first);
        assert!(admission.admit(a).is_ok());
    }

    #[test]
    fn origins_are_compared_without_case_or_trailing_slash() {
        let admission = Admission::new(AccessRules {
            allowed_origins: vec!["https://nntin.github.io/".into()],
            ..AccessRules::default()
        });
        assert!(admission.origin_allowed(&headers(&[("origin", "https://NNTin.github.io")])));
        assert!(!admission.origin_allowed(&headers(&[("origin", "https://evil.example")])));
        assert!(admission.origin_allowed(&headers(&[])));
    }

    #[test]
    fn the_servers_own_origin_is_always_allowed() {
        let admission = Admission::new(AccessRules {
            allowed_origins: vec!["https://nntin.github.io".into()],
            ..AccessRules::default()
        });
        let allowed = |origin: &str, host: &str| {
            admission.origin_allowed(&headers(&[("origin", origin), ("host", host)]))
        };
        assert!(allowed("http://localhost:3000", "localhost:3000"));
        assert!(allowed("http://LocalHost:3000/", "localhost:3000"));
        assert!(allowed("http://[::1]:3000", "[::1]:3000"));
        assert!(allowed("https://zone.example", "zone.example"));
        assert!(allowed("https://zone.example", "zone.example:443"));
        assert!(allowed("http://zone.example:80", "zone.example"));
        assert!(!allowed("http://localhost:3001", "localhost:3000"));
        assert!(!allowed("http://zone.example", "zone.example:443"));
        assert!(!allowed("https://evil.example", "zone.example"));
        assert!(!allowed(
            "https://zone.example.evil.example",
            "zone.example"
        ));
        assert!(!allowed("null", "null"));
        assert!(!allowed("file://", ""));
        let mut not_text = headers(&[("host", "zone.example")]);
        not_text.insert(
            header::ORIGIN,
            HeaderValue::from_bytes(b"https://zone.\xffexample").unwrap(),
        );
        assert!(!admission.origin_allowed(&not_text));
    }
}
