//! `passthrough-filter`: the least a body-inspecting proxy-wasm filter does,
//! and nothing more. `bench/envoy_rps.py` loads it in place of pqguard to
//! split pqguard's cost into what any such filter pays in Envoy (a VM context
//! per request, holding the headers, buffering the body, copying it into the
//! VM) and what pqguard itself adds (reading headers and connection facts,
//! inspecting the body, writing its log record).
//!
//! Build: `cargo build --release --locked --target wasm32-wasip1 -p pqguard-bench --example passthrough-filter`
//! (the module is `target/wasm32-wasip1/release/examples/passthrough_filter.wasm`).
//! It is a benchmark baseline, not a filter to deploy: it lets everything through.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType};

/// The proxy-wasm ABI entry point (`main!` exports `_initialize` with
/// `#[no_mangle]`), the only `unsafe` here.
#[allow(unsafe_code)]
mod entry {
    use super::*;

    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
    }}
}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Passthrough))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Passthrough;

impl Context for Passthrough {}

impl HttpContext for Passthrough {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        // Hold the request until its body is complete, as pqguard does.
        if end_of_stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        // Copy the whole body into the VM, as an inspecting filter must; its
        // bytes are not looked at. A host error changes nothing for a baseline.
        let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size);
        std::hint::black_box(body.ok());
        Action::Continue
    }
}
