//! The collector queue: bounded, batched, with a retry schedule. Pure: the
//! shim does the `dispatch_http_call` and reports how it went.
//!
//! The shim's loop, on a timer every `flush_ms`:
//!
//! ```text
//! let batch = queue.take_batch(max_batch, now);        // empty: nothing to do now
//! if !batch.is_empty() { dispatch POST batch_body(&batch); keep `batch` with the call }
//! on the answer:  2xx          -> queue.delivered()
//!                 else/timeout -> queue.failed(batch, now)   // back to the front, retried later
//! ```
//!
//! Audit lines are pushed as they are written ([`AuditQueue::push`]); when
//! the queue is full, the new line is dropped and counted (the shim reports
//! the count as a metric; Envoy's log still has the line). One call is in
//! flight at a time, so the collector receives lines in order.

use std::collections::VecDeque;

/// Exponential backoff: `initial_ms`, doubling per consecutive failure, at
/// most `max_ms`. No jitter: each Envoy worker's timer already runs on its
/// own schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial_ms: u64,
    /// Longest delay.
    pub max_ms: u64,
}

impl Default for Backoff {
    /// 500 ms doubling to 30 s.
    fn default() -> Self {
        Self {
            initial_ms: 500,
            max_ms: 30_000,
        }
    }
}

impl Backoff {
    /// The delay before the next attempt after `failures` consecutive
    /// failures (0 failures: no delay).
    pub fn delay_ms(&self, failures: u32) -> u64 {
        if failures == 0 {
            return 0;
        }
        let doublings = (failures - 1).min(63);
        self.initial_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_ms)
    }
}

/// What happened to a pushed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Queued for the collector.
    Queued,
    /// The queue was full: the line was dropped. `total` counts every line
    /// dropped since the queue was created.
    Dropped {
        /// Lines dropped so far.
        total: u64,
    },
}

/// A bounded queue of audit lines waiting for the collector.
#[derive(Debug, Clone)]
pub struct AuditQueue {
    capacity: usize,
    backoff: Backoff,
    lines: VecDeque<String>,
    in_flight: usize,
    dropped: u64,
    failures: u32,
    retry_at_ms: u64,
}

impl AuditQueue {
    /// An empty queue holding at most `capacity` lines (queued and in
    /// flight together; at least 1).
    pub fn new(capacity: usize, backoff: Backoff) -> Self {
        Self {
            capacity: capacity.max(1),
            backoff,
            lines: VecDeque::new(),
            in_flight: 0,
            dropped: 0,
            failures: 0,
            retry_at_ms: 0,
        }
    }

    /// Queues a line, or drops it when the queue is full.
    pub fn push(&mut self, line: String) -> Push {
        if self.lines.len() + self.in_flight >= self.capacity {
            self.dropped += 1;
            return Push::Dropped {
                total: self.dropped,
            };
        }
        self.lines.push_back(line);
        Push::Queued
    }

    /// Whether a batch may be sent at `now_ms`: lines are waiting, no call is
    /// in flight, and the backoff after a failure has passed.
    pub fn ready(&self, now_ms: u64) -> bool {
        !self.lines.is_empty() && self.in_flight == 0 && now_ms >= self.retry_at_ms
    }

    /// Takes up to `max` lines (oldest first) for one call, or nothing when
    /// not [`ready`](Self::ready). The lines count against the capacity until
    /// [`delivered`](Self::delivered) or [`failed`](Self::failed).
    pub fn take_batch(&mut self, max: usize, now_ms: u64) -> Vec<String> {
        if !self.ready(now_ms) || max == 0 {
            return Vec::new();
        }
        let n = max.min(self.lines.len());
        let batch: Vec<String> = self.lines.drain(..n).collect();
        self.in_flight = batch.len();
        batch
    }

    /// Every queued line, as the batch in flight, whatever the back-off
    /// (the last call of a worker that is going).
    pub fn take_all(&mut self) -> Vec<String> {
        let batch: Vec<String> = self.lines.drain(..).collect();
        self.in_flight = batch.len();
        batch
    }

    /// The batch in flight was accepted by the collector.
    pub fn delivered(&mut self) {
        self.in_flight = 0;
        self.failures = 0;
        self.retry_at_ms = 0;
    }

    /// The batch in flight failed (error status, timeout, no cluster): its
    /// lines go back to the front, in order, and the next attempt waits for
    /// the backoff. Returns the time of the next attempt.
    pub fn failed(&mut self, batch: Vec<String>, now_ms: u64) -> u64 {
        self.in_flight = 0;
        for line in batch.into_iter().rev() {
            if self.lines.len() >= self.capacity {
                // Only if more came back than went out: keep the bound.
                self.dropped += 1;
                continue;
            }
            self.lines.push_front(line);
        }
        self.failures = self.failures.saturating_add(1);
        self.retry_at_ms = now_ms.saturating_add(self.backoff.delay_ms(self.failures));
        self.retry_at_ms
    }

    /// False while the collector is failing (the last call failed) or the
    /// queue is full: what strict mode denies requests on.
    pub fn healthy(&self) -> bool {
        self.failures == 0 && self.lines.len() + self.in_flight < self.capacity
    }

    /// Lines waiting (not counting those in flight).
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// True when no line is waiting.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The bound.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Lines in flight (0 or the size of the batch being sent).
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Consecutive failed calls.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// When the next call may start (0: now).
    pub fn retry_at_ms(&self) -> u64 {
        self.retry_at_ms
    }
}

/// The body of a collector call: the lines, each followed by `\n`
/// (`Content-Type: text/plain`; `pqguard audit verify` reads it as is).
pub fn batch_body(lines: &[String]) -> Vec<u8> {
    let mut body = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        body.extend_from_slice(line.as_bytes());
        body.push(b'\n');
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn lines(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("l{i}")).collect()
    }

    #[test]
    fn drops_new_lines_when_full_and_counts_them() {
        let mut q = AuditQueue::new(3, Backoff::default());
        for l in lines(3) {
            assert_eq!(q.push(l), Push::Queued);
        }
        assert!(!q.healthy(), "full");
        assert_eq!(q.push("x".into()), Push::Dropped { total: 1 });
        assert_eq!(q.push("y".into()), Push::Dropped { total: 2 });
        assert_eq!(q.len(), 3);
        // Lines in flight still count against the bound.
        let batch = q.take_batch(2, 0);
        assert_eq!(batch, ["l0", "l1"]);
        assert_eq!(q.push("z".into()), Push::Dropped { total: 3 });
        q.delivered();
        assert_eq!(q.push("a".into()), Push::Queued);
        assert_eq!(q.dropped(), 3);
    }

    #[test]
    fn one_batch_in_flight_oldest_first() {
        let mut q = AuditQueue::new(10, Backoff::default());
        for l in lines(5) {
            q.push(l);
        }
        assert_eq!(q.take_batch(2, 0), ["l0", "l1"]);
        assert!(q.take_batch(2, 0).is_empty(), "a call is in flight");
        q.delivered();
        assert_eq!(q.take_batch(10, 0), ["l2", "l3", "l4"]);
        q.delivered();
        assert!(q.take_batch(10, 0).is_empty());
        assert!(q.is_empty() && q.healthy());
    }

    #[test]
    fn failed_batches_return_to_the_front_and_wait_for_the_backoff() {
        let b = Backoff {
            initial_ms: 100,
            max_ms: 1000,
        };
        let mut q = AuditQueue::new(10, b);
        for l in lines(4) {
            q.push(l);
        }
        let batch = q.take_batch(3, 0);
        q.push("l4".into());
        assert_eq!(q.failed(batch, 1000), 1100);
        assert!(!q.healthy());
        assert!(q.take_batch(10, 1099).is_empty(), "backing off");
        let batch = q.take_batch(10, 1100);
        assert_eq!(batch, ["l0", "l1", "l2", "l3", "l4"], "order kept");
        assert_eq!(q.failed(batch, 2000), 2200);
        let batch = q.take_batch(10, 2200);
        assert_eq!(q.failed(batch, 3000), 3400);
        q.take_batch(10, 3400);
        q.delivered();
        assert!(q.healthy());
        assert_eq!(q.failures(), 0);
        assert_eq!(q.dropped(), 0);
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let b = Backoff {
            initial_ms: 500,
            max_ms: 30_000,
        };
        let delays: Vec<u64> = (0..9).map(|f| b.delay_ms(f)).collect();
        assert_eq!(
            delays,
            [0, 500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]
        );
        assert_eq!(b.delay_ms(u32::MAX), 30_000);
    }

    #[test]
    fn batch_bodies_are_newline_terminated_lines() {
        assert_eq!(batch_body(&lines(2)), b"l0\nl1\n");
        assert!(batch_body(&[]).is_empty());
    }
}
