//! The strict scanner against serde_json: whatever the scanner accepts is JSON (it is never more
//! lenient than the grammar), and it never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pqguard_core::inspect::json::{scan, ScanLimits};

fuzz_target!(|data: &[u8]| {
    if scan(data, ScanLimits::default()).is_ok() {
        assert!(
            serde_json::from_slice::<serde_json::Value>(data).is_ok(),
            "the scanner accepted what serde_json refuses"
        );
    }
});
