//! Timing: warm up, size the batches from the warm-up, then time several
//! batches and keep their median.
//!
//! Only `std::time::Instant` is used; under WASI it is the host's monotonic
//! clock (`clock_time_get`), which Node.js implements with its high-resolution
//! timer. The clock is read once per batch, never per iteration, so its cost
//! does not show in the figures.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// How long to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Time spent running the operation before any measurement (JIT tiering
    /// in V8, caches, branch predictors). It also sizes the batches.
    pub warmup: Duration,
    /// Target duration of one timed batch.
    pub batch: Duration,
    /// Number of timed batches; the median is reported.
    pub batches: usize,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            warmup: Duration::from_millis(200),
            batch: Duration::from_millis(60),
            batches: 9,
        }
    }
}

/// The result of timing one operation on one input.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Iterations in each timed batch.
    pub iterations: u64,
    /// Nanoseconds per iteration of every batch, sorted ascending.
    pub ns_per_iter: Vec<f64>,
}

impl Sample {
    /// Median nanoseconds per iteration.
    pub fn median_ns(&self) -> f64 {
        let n = self.ns_per_iter.len();
        if n == 0 {
            return f64::NAN;
        }
        let lo = self
            .ns_per_iter
            .get((n - 1) / 2)
            .copied()
            .unwrap_or(f64::NAN);
        let hi = self.ns_per_iter.get(n / 2).copied().unwrap_or(f64::NAN);
        (lo + hi) / 2.0
    }

    /// Fastest batch, nanoseconds per iteration.
    pub fn min_ns(&self) -> f64 {
        self.ns_per_iter.first().copied().unwrap_or(f64::NAN)
    }

    /// Slowest batch, nanoseconds per iteration.
    pub fn max_ns(&self) -> f64 {
        self.ns_per_iter.last().copied().unwrap_or(f64::NAN)
    }

    /// Throughput at the median, in MB/s (10^6 bytes per second) for inputs of `bytes`.
    pub fn mb_per_s(&self, bytes: usize) -> f64 {
        bytes as f64 * 1e3 / self.median_ns()
    }
}

/// Times `op` according to `plan`. The value `op` returns is passed through
/// [`black_box`] so the work cannot be optimised away.
pub fn measure<T>(plan: Plan, mut op: impl FnMut() -> T) -> Sample {
    // Warm-up: at least one call, then until the warm-up time is spent.
    let start = Instant::now();
    let mut warm: u64 = 0;
    loop {
        black_box(op());
        warm += 1;
        if start.elapsed() >= plan.warmup {
            break;
        }
    }
    let per_iter = start.elapsed().as_secs_f64() / warm as f64;
    let iterations = if per_iter > 0.0 {
        (plan.batch.as_secs_f64() / per_iter).ceil().max(1.0) as u64
    } else {
        1
    };

    let mut ns_per_iter = Vec::with_capacity(plan.batches);
    for _ in 0..plan.batches.max(1) {
        let t = Instant::now();
        for _ in 0..iterations {
            black_box(op());
        }
        ns_per_iter.push(t.elapsed().as_nanos() as f64 / iterations as f64);
    }
    ns_per_iter.sort_by(f64::total_cmp);
    Sample {
        iterations,
        ns_per_iter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let odd = Sample {
            iterations: 1,
            ns_per_iter: vec![1.0, 2.0, 10.0],
        };
        assert_eq!(odd.median_ns(), 2.0);
        let even = Sample {
            iterations: 1,
            ns_per_iter: vec![1.0, 2.0, 4.0, 10.0],
        };
        assert_eq!(even.median_ns(), 3.0);
        assert_eq!(even.min_ns(), 1.0);
        assert_eq!(even.max_ns(), 10.0);
        // 1,000 bytes in 1,000 ns = 1 GB/s = 1,000 MB/s.
        let s = Sample {
            iterations: 1,
            ns_per_iter: vec![1000.0],
        };
        assert_eq!(s.mb_per_s(1000), 1000.0);
    }

    #[test]
    fn measure_runs_the_planned_batches() {
        let plan = Plan {
            warmup: Duration::from_millis(1),
            batch: Duration::from_millis(1),
            batches: 5,
        };
        let mut calls = 0u64;
        let sample = measure(plan, || {
            calls += 1;
            calls
        });
        assert_eq!(sample.ns_per_iter.len(), 5);
        assert!(sample.iterations >= 1);
        assert!(calls >= 5 * sample.iterations);
        assert!(sample.ns_per_iter.windows(2).all(|w| w[0] <= w[1]));
    }
}
