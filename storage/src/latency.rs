//! An object-store latency model, so that latency measured on a machine with a local disk
//! means something for S3.
//!
//! Each request waits a time drawn from a log-normal distribution fitted to a p50 and a p99
//! (S3 Standard, as commonly measured: PUT p50 ≈ 30 ms, p99 ≈ 150 ms; GET p50 ≈ 15 ms,
//! p99 ≈ 80 ms — the defaults) before it goes to the real store. Selected by
//! `[storage.latency]` in the node's configuration; off by default.

use rand::Rng;
use std::time::Duration;

/// z-score of the 99th percentile of a standard normal distribution.
const Z99: f64 = 2.326_347_874;

/// `[storage.latency]`: the latency model's parameters.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LatencyModel {
    /// Apply the model.
    pub enabled: bool,
    /// Median PUT latency.
    pub put_p50_ms: f64,
    /// 99th-percentile PUT latency.
    pub put_p99_ms: f64,
    /// Median GET latency.
    pub get_p50_ms: f64,
    /// 99th-percentile GET latency.
    pub get_p99_ms: f64,
}

impl Default for LatencyModel {
    fn default() -> Self {
        Self {
            enabled: false,
            put_p50_ms: 30.0,
            put_p99_ms: 150.0,
            get_p50_ms: 15.0,
            get_p99_ms: 80.0,
        }
    }
}

/// A draw from the log-normal distribution with this median and 99th percentile.
fn draw(p50_ms: f64, p99_ms: f64, rng: &mut impl Rng) -> Duration {
    if p50_ms <= 0.0 {
        return Duration::ZERO;
    }
    let mu = p50_ms.ln();
    let sigma = ((p99_ms.max(p50_ms)).ln() - mu) / Z99;
    // Box-Muller: one standard normal sample from two uniforms in (0, 1].
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    Duration::from_secs_f64((mu + sigma * z).exp() / 1000.0)
}

impl LatencyModel {
    /// Delay before a PUT.
    pub fn put_delay(&self) -> Duration {
        if self.enabled {
            draw(self.put_p50_ms, self.put_p99_ms, &mut rand::rng())
        } else {
            Duration::ZERO
        }
    }

    /// Delay before a GET.
    pub fn get_delay(&self) -> Duration {
        if self.enabled {
            draw(self.get_p50_ms, self.get_p99_ms, &mut rand::rng())
        } else {
            Duration::ZERO
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_match_the_requested_percentiles() {
        let mut rng = rand::rng();
        let mut v: Vec<f64> = (0..20_000)
            .map(|_| draw(30.0, 150.0, &mut rng).as_secs_f64() * 1000.0)
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        let p50 = v[v.len() / 2];
        let p99 = v[v.len() * 99 / 100];
        assert!((25.0..36.0).contains(&p50), "p50 {p50}");
        assert!((115.0..195.0).contains(&p99), "p99 {p99}");
        assert_eq!(
            LatencyModel::default().put_delay(),
            Duration::ZERO,
            "off by default"
        );
    }
}
