//! Values the servers' command lines share the reading of: networks for
//! `--trusted-proxy`, and seconds for intervals and deadlines.
//!
//! Kept here so that `d_back` and `cloudlink` accept exactly the same forms and
//! answer a wrong value with the same sentence.

use std::time::Duration;

use ipnet::IpNet;

/// Accepts `10.0.0.1` (one address) or `10.0.0.0/8` (a network).
///
/// ```
/// assert!(edge::values::parse_network("10.0.0.0/8").is_ok());
/// assert!(edge::values::parse_network("::1").is_ok());
/// assert!(edge::values::parse_network("proxy").is_err());
/// ```
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("'{text}' is neither an IP address nor a network like 10.0.0.0/8"))
}

/// A number of seconds of 0 or more, for `flag`.
pub fn seconds(flag: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("{flag} must be a number of seconds of 0 or more, not {value}"))
}

/// A deadline or an interval: a number of seconds above 0 (a deadline of 0
/// would drop every client).
///
/// ```
/// assert!(edge::values::positive_seconds("--join-timeout", 0.0).is_err());
/// assert_eq!(edge::values::positive_seconds("--join-timeout", 1.5).unwrap().as_millis(), 1500);
/// ```
pub fn positive_seconds(flag: &str, value: f64) -> Result<Duration, String> {
    match seconds(flag, value)? {
        duration if duration.is_zero() => Err(format!(
            "{flag} must be more than 0 seconds; a deadline of 0 would drop every client"
        )),
        duration => Ok(duration),
    }
}
