//! MCP / JSON-RPC inspection at every protocol version: never panics, and what it accepts is JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pqguard_core::inspect::mcp::{parse_body, ParseOptions, ProtocolVersion};

fuzz_target!(|data: &[u8]| {
    for version in ProtocolVersion::ALL {
        if let Ok(inspected) = parse_body(data, version, &ParseOptions::default()) {
            assert!(serde_json::from_slice::<serde_json::Value>(data).is_ok());
            assert!(!inspected.messages.is_empty());
        }
    }
});
