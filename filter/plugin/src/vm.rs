//! Per-VM plumbing: the engine's [`Worker`] shared by the root context and
//! every request of one Envoy worker, the counters it defines, and the
//! executor of the engine's [`Effects`].

use std::cell::RefCell;
use std::collections::HashMap;

use proxy_wasm::types::LogLevel;

use pqguard_core::engine::{Effects, Level, SharedStore, Worker};

use crate::host;

/// The engine's shared state across workers: proxy-wasm shared data.
pub struct SharedData;

impl SharedStore for SharedData {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        host::shared_get(key).unwrap_or((None, None))
    }

    fn read(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
        host::shared_get(key).map_err(|e| e.to_string())
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String> {
        host::shared_set(key, value, cas).map_err(|e| e.to_string())
    }

    /// Envoy's shared data stores a new key whatever version the write
    /// names, and refuses a write to an existing key whose version differs:
    /// a write naming `u32::MAX` (a version the host hands out once per 4
    /// billion writes) creates the key only if it is absent.
    fn create(&self, key: &str, value: &[u8]) -> Result<bool, String> {
        host::shared_set(key, value, Some(u32::MAX)).map_err(|e| e.to_string())
    }
}

/// State of one VM (one Envoy worker).
pub struct Vm {
    /// The engine's per-worker state.
    pub worker: RefCell<Worker>,
    metrics: RefCell<HashMap<String, u32>>,
}

impl Vm {
    /// A VM around a started worker.
    pub fn new(worker: Worker) -> Self {
        Self {
            worker: RefCell::new(worker),
            metrics: RefCell::new(HashMap::new()),
        }
    }

    /// Carries out the engine's effects: counters, then log lines.
    pub fn run(&self, out: Effects) {
        for (name, by) in out.counts {
            self.count(&name, by);
        }
        run_logs(out.logs);
    }

    /// Adds `by` to the counter `name`, defining it on first use.
    fn count(&self, name: &str, by: i64) {
        let mut metrics = self.metrics.borrow_mut();
        let id = match metrics.get(name) {
            Some(id) => Some(*id),
            None => {
                let id = host::define_counter(name);
                if let Some(id) = id {
                    metrics.insert(name.to_owned(), id);
                }
                id
            }
        };
        if let (Some(id), true) = (id, by != 0) {
            host::increment(id, by);
        }
    }
}

/// Writes the engine's log lines to Envoy's log.
pub fn run_logs(lines: Vec<(Level, String)>) {
    for (level, line) in lines {
        let level = match level {
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        host::log(level, &line);
    }
}
