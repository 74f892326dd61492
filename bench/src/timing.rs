//! Timing: warm up, size the batches from the warm-up, then time several
//! batches, interleaved between the operations compared, and keep the median.
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
            batch: Duration::from_millis(40),
            batches: 15,
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

/// One operation to time: a closure that does the work once and passes its
/// result through [`black_box`] so the work cannot be optimised away.
pub type Op<'a> = Box<dyn FnMut() + 'a>;

/// Wraps `f` as an [`Op`], passing its result through [`black_box`].
pub fn op<'a, T>(mut f: impl FnMut() -> T + 'a) -> Op<'a> {
    Box::new(move || {
        black_box(f());
    })
}

/// Times one operation according to `plan`. The value `op` returns is passed
/// through [`black_box`] so the work cannot be optimised away.
pub fn measure<T>(plan: Plan, f: impl FnMut() -> T) -> Sample {
    let mut ops = [op(f)];
    measure_interleaved(plan, &mut ops).pop().unwrap_or(Sample {
        iterations: 0,
        ns_per_iter: Vec::new(),
    })
}

/// Times each operation according to `plan`, interleaved: every operation is
/// warmed up, then the timed batches run in turn (a batch of the first, a
/// batch of the second, ..., then the next round). Interference from the rest
/// of the machine, which comes and goes over seconds, then hits all
/// operations alike, so their ratios stay meaningful on a noisy machine.
/// Returns one [`Sample`] per operation, in order.
pub fn measure_interleaved(plan: Plan, ops: &mut [Op<'_>]) -> Vec<Sample> {
    let iterations: Vec<u64> = ops.iter_mut().map(|op| warm_up(plan, op)).collect();
    let mut samples: Vec<Sample> = iterations
        .iter()
        .map(|&iterations| Sample {
            iterations,
            ns_per_iter: Vec::with_capacity(plan.batches),
        })
        .collect();
    for _ in 0..plan.batches.max(1) {
        for (op, sample) in ops.iter_mut().zip(samples.iter_mut()) {
            let t = Instant::now();
            for _ in 0..sample.iterations {
                op();
            }
            let ns = t.elapsed().as_nanos() as f64 / sample.iterations as f64;
            sample.ns_per_iter.push(ns);
        }
    }
    for sample in &mut samples {
        sample.ns_per_iter.sort_by(f64::total_cmp);
    }
    samples
}

/// Runs `op` for the warm-up time (at least once) and returns how many
/// iterations fill one batch.
fn warm_up(plan: Plan, op: &mut Op<'_>) -> u64 {
    let start = Instant::now();
    let mut warm: u64 = 0;
    loop {
        op();
        warm += 1;
        if start.elapsed() >= plan.warmup {
            break;
        }
    }
    let per_iter = start.elapsed().as_secs_f64() / warm as f64;
    if per_iter > 0.0 {
        (plan.batch.as_secs_f64() / per_iter).ceil().max(1.0) as u64
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measure_times_a_single_operation() {
        let plan = Plan {
            warmup: Duration::from_millis(1),
            batch: Duration::from_millis(1),
            batches: 3,
        };
        let sample = measure(plan, || 1 + 1);
        assert_eq!(sample.ns_per_iter.len(), 3);
        assert!(sample.iterations >= 1);
    }

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
    fn measure_runs_the_planned_batches_of_every_operation() {
        let plan = Plan {
            warmup: Duration::from_millis(1),
            batch: Duration::from_millis(1),
            batches: 5,
        };
        let calls = [std::cell::Cell::new(0u64), std::cell::Cell::new(0u64)];
        let mut ops = [
            op(|| calls[0].set(calls[0].get() + 1)),
            op(|| {
                calls[1].set(calls[1].get() + 1);
                std::thread::sleep(Duration::from_micros(50));
            }),
        ];
        let samples = measure_interleaved(plan, &mut ops);
        drop(ops);
        assert_eq!(samples.len(), 2);
        for (sample, calls) in samples.iter().zip(&calls) {
            assert_eq!(sample.ns_per_iter.len(), 5);
            assert!(sample.iterations >= 1);
            assert!(calls.get() >= 5 * sample.iterations);
            assert!(sample.ns_per_iter.windows(2).all(|w| w[0] <= w[1]));
        }
        // The slower operation gets fewer iterations per batch.
        assert!(samples[1].iterations <= samples[0].iterations);
        assert!(samples[1].median_ns() > samples[0].median_ns());
    }
}
