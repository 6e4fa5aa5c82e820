//! The door of an operator's HTTP API (d-back's ingest API, CloudLink's
//! admin API): `Authorization: Bearer <token>`, checked in constant time.
//!
//! The scheme name is matched without regard to case (`bearer`, `BEARER`), as
//! RFC 7235 section 2.1 asks of every auth scheme: HTTP libraries and proxies
//! differ in how they spell it, and refusing a right token over its spelling
//! would only confuse the bot's author. The token itself is compared exactly.
//!
//! This module never logs the token, the presented credentials or a body.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Arc;

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

/// The configured token, kept so that checking a guess reveals neither its
/// content nor its length.
#[derive(Clone)]
pub struct Token {
    /// The bearer token callers must present.
    secret: Arc<[u8]>,
    /// Keyed hashing, so that comparing tokens reveals neither content nor length.
    hasher: RandomState,
    /// The token's keyed hash.
    digest: u64,
}

/// Why a request was not let in; each has a sentence the caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization` header, or not the `Bearer` scheme.
    Missing,
    /// A bearer token, but not the configured one.
    Wrong,
}

impl Refusal {
    /// What to tell the caller; `token` names the token, e.g. `the ingest token`.
    ///
    /// ```
    /// use edge::bearer::Refusal;
    /// assert_eq!(
    ///     Refusal::Wrong.sentence("the admin token"),
    ///     "the admin token is wrong"
    /// );
    /// ```
    pub fn sentence(self, token: &str) -> String {
        match self {
            Refusal::Missing => format!("send {token} as 'Authorization: Bearer <token>'"),
            Refusal::Wrong => format!("{token} is wrong"),
        }
    }
}

/// Shows no part of the secret.
impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// The token callers must present.
    pub fn new(secret: &str) -> Self {
        let hasher = RandomState::new();
        let digest = keyed_digest(&hasher, secret.as_bytes());
        Self {
            secret: Arc::from(secret.as_bytes()),
            hasher,
            digest,
        }
    }

    /// Lets the request in, or says why not.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_credentials)
            .ok_or(Refusal::Missing)?;
        if self.accepts(presented.as_bytes()) {
            Ok(())
        } else {
            Err(Refusal::Wrong)
        }
    }

    /// Constant-time check: the keyed digests are compared without branching, and
    /// the bytes (whose length may differ) only once the digests already match.
    fn accepts(&self, presented: &[u8]) -> bool {
        bool::from(keyed_digest(&self.hasher, presented).ct_eq(&self.digest))
            && bool::from(presented.ct_eq(&self.secret))
    }
}

fn keyed_digest(hasher: &RandomState, bytes: &[u8]) -> u64 {
    let mut hasher = hasher.build_hasher();
    hasher.write(bytes);
    hasher.finish()
}

/// The credentials of a `Bearer` authorization value: the scheme in any case,
/// then one or more spaces, then the token (surrounding white space dropped).
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim_start().split_once([' ', '\t'])?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_is_read_in_any_case() {
        for value in [
            "Bearer t",
            "bearer t",
            "BEARER t",
            "bEaReR  t ",
            "Bearer\tt",
        ] {
            assert_eq!(bearer_credentials(value), Some("t"), "{value:?}");
        }
        for value in ["Basic t", "Bearert", "Bearer ", "Bearer", "", "Bear t"] {
            assert_eq!(bearer_credentials(value), None, "{value:?}");
        }
    }

    #[test]
    fn only_the_exact_token_is_accepted() {
        let token = Token::new("s3cret");
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            token.check(&headers)
        };
        assert_eq!(with("bearer s3cret"), Ok(()));
        assert_eq!(with("Bearer S3CRET"), Err(Refusal::Wrong));
        assert_eq!(with("Bearer s3cre"), Err(Refusal::Wrong));
        assert_eq!(with("Basic s3cret"), Err(Refusal::Missing));
        assert_eq!(token.check(&HeaderMap::new()), Err(Refusal::Missing));
    }
}
