//! What our server says about itself, from its Prometheus page
//! (`GET /metrics`), read before and after the measured seconds: the sets it
//! accepted (its own count, not what the generator managed to send) and its
//! flushes to the durable store, which show whether the store keeps up.
//!
//! Only our server has the page; for another server the figures are left out.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::report::Figures;

/// How long the page may take; a server too busy to answer within it is
/// reported without these figures rather than holding up the run.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One reading of the page: each sample's name (with its labels) and value.
#[derive(Debug, Default, Clone)]
pub struct Reading(HashMap<String, f64>);

impl Reading {
    /// Reads the page of the server at `addr`; `None` if it has none.
    pub async fn take(addr: SocketAddr) -> Option<Self> {
        let client = reqwest::Client::builder()
            .timeout(READ_TIMEOUT)
            .build()
            .ok()?;
        let response = client
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        Some(Self::parse(&response.text().await.ok()?))
    }

    /// The samples of a Prometheus text page (comments skipped).
    pub fn parse(page: &str) -> Self {
        let samples = page
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect();
        Self(samples)
    }

    fn get(&self, name: &str) -> Option<f64> {
        self.0.get(name).copied()
    }

    /// The upper bounds of a histogram's buckets, with the count of each, in order.
    fn buckets(&self, histogram: &str) -> Vec<(f64, f64)> {
        let prefix = format!("{histogram}_bucket{{le=\"");
        let mut buckets: Vec<(f64, f64)> = self
            .0
            .iter()
            .filter_map(|(name, &count)| {
                let bound = name.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                let bound = if bound == "+Inf" {
                    f64::INFINITY
                } else {
                    bound.parse().ok()?
                };
                Some((bound, count))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    }
}

/// Adds what happened between `before` and `after` (`seconds` apart) to `figures`:
/// sets accepted a second, flushes to the store, their mean time, the bucket
/// bound every flush stayed within, and the store's size at the end.
pub fn add_figures(figures: &mut Figures, before: &Reading, after: &Reading, seconds: f64) {
    let delta = |name: &str| Some(after.get(name)? - before.get(name)?);
    if let Some(sets) = delta("cloudlink_scratch_sets_total") {
        figures.insert("sets_accepted_per_s", sets / seconds);
    }
    let flushes = delta("cloudlink_store_flush_seconds_count").unwrap_or(0.0);
    if flushes > 0.0 {
        figures.insert("flushes", flushes);
        if let Some(sum) = delta("cloudlink_store_flush_seconds_sum") {
            figures.insert("flush_mean_ms", 1000.0 * sum / flushes);
        }
        let earlier = before.buckets("cloudlink_store_flush_seconds");
        let within = after
            .buckets("cloudlink_store_flush_seconds")
            .into_iter()
            .zip(earlier)
            .find(|((_, now), (_, then))| now - then >= flushes)
            .map(|((bound, _), _)| bound);
        if let Some(bound) = within.filter(|b| b.is_finite()) {
            figures.insert("flush_max_within_ms", 1000.0 * bound);
        }
    }
    if let Some(bytes) = after.get("cloudlink_store_bytes") {
        figures.insert("store_mib", bytes / (1024.0 * 1024.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# HELP x\n\
        cloudlink_scratch_sets_total 100\n\
        cloudlink_store_flush_seconds_sum 0.5\n\
        cloudlink_store_flush_seconds_count 10\n\
        cloudlink_store_flush_seconds_bucket{le=\"0.01\"} 9\n\
        cloudlink_store_flush_seconds_bucket{le=\"0.1\"} 10\n\
        cloudlink_store_flush_seconds_bucket{le=\"+Inf\"} 10\n";
    const AFTER: &str = "cloudlink_scratch_sets_total 1100\n\
        cloudlink_store_flush_seconds_sum 0.7\n\
        cloudlink_store_flush_seconds_count 14\n\
        cloudlink_store_flush_seconds_bucket{le=\"0.01\"} 12\n\
        cloudlink_store_flush_seconds_bucket{le=\"0.1\"} 14\n\
        cloudlink_store_flush_seconds_bucket{le=\"+Inf\"} 14\n\
        cloudlink_store_bytes 2097152\n";

    #[test]
    fn figures_are_what_changed_between_the_readings() {
        let mut figures = Figures::new();
        add_figures(
            &mut figures,
            &Reading::parse(BEFORE),
            &Reading::parse(AFTER),
            2.0,
        );
        let get = |name| *figures.get(name).unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(get("sets_accepted_per_s"), 500.0);
        assert_eq!(get("flushes"), 4.0);
        assert!((get("flush_mean_ms") - 50.0).abs() < 1e-9);
        // Only 3 of the 4 flushes were within 10 ms; all were within 100 ms.
        assert_eq!(get("flush_max_within_ms"), 100.0);
        assert_eq!(get("store_mib"), 2.0);
    }

    #[test]
    fn without_flushes_or_the_page_nothing_is_made_up() {
        let mut figures = Figures::new();
        let reading = Reading::parse(BEFORE);
        add_figures(&mut figures, &reading, &reading, 1.0);
        assert_eq!(figures.get("sets_accepted_per_s"), Some(&0.0));
        assert_eq!(figures.get("flushes"), None);
        let mut figures = Figures::new();
        add_figures(&mut figures, &Reading::default(), &reading, 1.0);
        assert_eq!(figures.get("sets_accepted_per_s"), None);
    }
}
