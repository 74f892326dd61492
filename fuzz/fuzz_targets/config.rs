//! The plugin configuration, as JSON and as a serialized protobuf Struct: never panics; a Struct
//! that decodes is a JSON object.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pqguard_core::config::{structpb::decode_struct, Config};

fuzz_target!(|data: &[u8]| {
    let _ = Config::from_json(data);
    if let Ok(value) = decode_struct(data) {
        assert!(value.is_object(), "a Struct decodes to an object");
    }
});
