//! What a run measured: operations, successes, throughput, latency percentiles.

use std::time::Duration;

use crate::spec::WorkerReport;

#[derive(Debug, Clone, Default)]
pub struct Measurement {
    /// Timed operations.
    pub ops: u64,
    /// Of those, the successful ones (lease granted; CAS: all).
    pub ok: u64,
    /// Tries (CAS: read + conditional write pairs).
    pub attempts: u64,
    /// Successful untimed warm-up operations.
    pub warmup_ok: u64,
    /// From the start signal until the last client finished (the slowest worker's).
    pub elapsed: Duration,
    /// Latencies in microseconds, sorted.
    pub sorted_us: Vec<u32>,
    /// A client stopped at the wall-clock cap.
    pub capped: bool,
    /// The first error a client stopped on.
    pub error: Option<String>,
    /// A client stopped because the queue was empty (the work-item run drained it).
    pub drained: bool,
}

impl Measurement {
    pub fn merge(reports: Vec<WorkerReport>) -> Measurement {
        let mut m = Measurement::default();
        for report in reports {
            m.ops += report.latencies_us.len() as u64;
            m.sorted_us.extend(report.latencies_us);
            m.ok += report.ok;
            m.attempts += report.attempts;
            m.warmup_ok += report.warmup_ok;
            m.elapsed = m.elapsed.max(Duration::from_micros(report.elapsed_us));
            m.capped |= report.capped;
            m.drained |= report.drained;
            if m.error.is_none() {
                m.error = report.error;
            }
        }
        m.sorted_us.sort_unstable();
        m
    }

    /// Operations per second over the run's wall-clock time.
    pub fn ops_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { self.ops as f64 / secs } else { 0.0 }
    }

    /// The `p`-th percentile latency (nearest rank), `p` in 0..=100.
    pub fn percentile(&self, p: f64) -> Duration {
        percentile(&self.sorted_us, p)
    }

    /// Builds a measurement from sequential latencies (the CLI runs, one call at a time).
    pub fn sequential(latencies: Vec<Duration>, elapsed: Duration, capped: bool) -> Measurement {
        let mut sorted_us: Vec<u32> = latencies
            .iter()
            .map(|d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX))
            .collect();
        sorted_us.sort_unstable();
        Measurement {
            ops: sorted_us.len() as u64,
            ok: sorted_us.len() as u64,
            attempts: sorted_us.len() as u64,
            warmup_ok: 0,
            elapsed,
            sorted_us,
            capped,
            error: None,
            drained: false,
        }
    }
}

/// Nearest-rank percentile of sorted microsecond samples.
pub fn percentile(sorted_us: &[u32], p: f64) -> Duration {
    if sorted_us.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted_us.len()) - 1;
    Duration::from_micros(u64::from(sorted_us[index]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&samples, 50.0), Duration::from_micros(50));
        assert_eq!(percentile(&samples, 99.0), Duration::from_micros(99));
        assert_eq!(percentile(&samples, 100.0), Duration::from_micros(100));
        assert_eq!(percentile(&[7], 99.0), Duration::from_micros(7));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn merges_workers() {
        let a = WorkerReport {
            latencies_us: vec![3, 1],
            ok: 1,
            attempts: 2,
            elapsed_us: 1_000_000,
            ..WorkerReport::default()
        };
        let b = WorkerReport {
            latencies_us: vec![2],
            ok: 1,
            attempts: 1,
            elapsed_us: 2_000_000,
            error: Some("boom".into()),
            ..WorkerReport::default()
        };
        let m = Measurement::merge(vec![a, b]);
        assert_eq!(m.ops, 3);
        assert_eq!(m.sorted_us, vec![1, 2, 3]);
        assert_eq!(m.elapsed, Duration::from_secs(2));
        assert!((m.ops_per_sec() - 1.5).abs() < 1e-9);
        assert_eq!(m.error.as_deref(), Some("boom"));
    }
}
