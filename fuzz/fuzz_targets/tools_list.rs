//! `tools/list` answers as JSON and as event streams (fed in two chunks): never panics, and a
//! list that parses can be written back and parsed again with the same tools.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pqguard_core::inspect::response::{ResponseFormat, ToolsListBody};
use pqguard_core::inspect::sse::SseParser;

fuzz_target!(|data: &[u8]| {
    for format in [ResponseFormat::Json, ResponseFormat::EventStream] {
        if let Ok(parsed) = ToolsListBody::parse(format, data, "1", 1 << 20) {
            let again = ToolsListBody::parse(format, &parsed.to_bytes(), "1", 1 << 20).expect("its own output parses");
            let names = |b: &ToolsListBody| b.answer.names().into_iter().map(str::to_owned).collect::<Vec<_>>();
            assert_eq!(names(&parsed), names(&again));
        }
    }
    let mut sse = SseParser::new(64 * 1024);
    let (a, b) = data.split_at(data.len() / 2);
    if sse.push(a).is_ok() && sse.push(b).is_ok() {
        let _ = sse.finish();
    }
});
