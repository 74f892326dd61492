//! Typed access to the proxy-wasm host. Every call goes through
//! `proxy_wasm::hostcalls` (never the SDK's panicking convenience methods)
//! and every `Err` becomes a [`HostError`] or an absent value.
//!
//! Known limit: proxy-wasm 0.2.5's hostcalls themselves panic on statuses
//! they do not expect (for example `BadArgument` when request headers are
//! read after the request phase). The shim only calls them in the phases
//! where the host answers `Ok`/`NotFound`; should one still panic, the panic
//! hook logs it and `FAIL_CLOSED` makes Envoy answer 503.

use std::fmt;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, Status};

use pqguard_core::outcome::wire::LocalReply;

/// A host call that did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError {
    /// What was being done.
    pub call: &'static str,
    /// The host's status.
    pub status: Status,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed with {:?}", self.call, self.status)
    }
}

/// Writes a line to Envoy's log. Logging must never take the filter down,
/// so a failure to log is ignored.
pub fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// Whether the host writes info-level lines from this module (its log
/// level is info or more verbose). Asked at configuration and on every
/// tick, so a level changed at runtime (Envoy's `/logging`) takes effect
/// within a tick.
pub fn info_logged() -> bool {
    hostcalls::get_log_level().map_or(true, |level| (level as u32) <= (LogLevel::Info as u32))
}

/// The plugin configuration bytes (empty when none is configured).
pub fn plugin_configuration(size: usize) -> Result<Vec<u8>, HostError> {
    if size == 0 {
        return Ok(Vec::new());
    }
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
        .map(Option::unwrap_or_default)
        .map_err(|status| HostError {
            call: "get plugin configuration",
            status,
        })
}

/// The buffered request body, `size` bytes from the start.
pub fn request_body(size: usize) -> Result<Vec<u8>, HostError> {
    if size == 0 {
        return Ok(Vec::new());
    }
    let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
        .map_err(|status| HostError {
            call: "get request body",
            status,
        })?
        .unwrap_or_default();
    if body.len() != size {
        // The host handed over less than it announced: never inspect a prefix.
        return Err(HostError {
            call: "get request body (short read)",
            status: Status::InternalFailure,
        });
    }
    Ok(body)
}

/// Sends a local reply instead of forwarding the request.
pub fn send_reply(reply: &LocalReply) -> Result<(), HostError> {
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    hostcalls::send_http_response(
        u32::from(reply.status),
        headers,
        Some(reply.body.as_bytes()),
    )
    .map_err(|status| HostError {
        call: "send local reply",
        status,
    })
}

fn property(path: Vec<&str>) -> Option<String> {
    match hostcalls::get_property(path) {
        Ok(Some(bytes)) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Ok(None) | Err(_) => None,
    }
}

/// Every request header (lower-case names, pseudo-headers included), read
/// with one host call in the request-headers callback (request headers are
/// gone later).
pub fn request_headers() -> Result<Vec<(String, Vec<u8>)>, HostError> {
    hostcalls::get_map_bytes(MapType::HttpRequestHeaders).map_err(|status| HostError {
        call: "get request headers",
        status,
    })
}

/// A response header, read in the response-headers callback.
pub fn response_header(name: &str) -> Option<String> {
    match hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, name) {
        Ok(Some(bytes)) => String::from_utf8(bytes).ok(),
        Ok(None) | Err(_) => None,
    }
}

/// Sets a request header, replacing any value (while the request is held).
pub fn set_request_header(name: &str, value: &str) -> Result<(), HostError> {
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value)).map_err(|status| {
        HostError {
            call: "set request header",
            status,
        }
    })
}

/// Removes a request header (before the request goes on).
pub fn remove_request_header(name: &str) -> Result<(), HostError> {
    hostcalls::remove_map_value(MapType::HttpRequestHeaders, name).map_err(|status| HostError {
        call: "remove request header",
        status,
    })
}

/// Sets a response header, replacing any value (before the body is rewritten).
pub fn set_response_header(name: &str, value: &str) -> Result<(), HostError> {
    hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value)).map_err(|status| {
        HostError {
            call: "set response header",
            status,
        }
    })
}

/// Removes a response header (before the body is rewritten).
pub fn remove_response_header(name: &str) -> Result<(), HostError> {
    hostcalls::remove_map_value(MapType::HttpResponseHeaders, name).map_err(|status| HostError {
        call: "remove response header",
        status,
    })
}

/// The buffered response body, `size` bytes from the start.
pub fn response_body(size: usize) -> Result<Vec<u8>, HostError> {
    if size == 0 {
        return Ok(Vec::new());
    }
    let body = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size)
        .map_err(|status| HostError {
            call: "get response body",
            status,
        })?
        .unwrap_or_default();
    if body.len() != size {
        return Err(HostError {
            call: "get response body (short read)",
            status: Status::InternalFailure,
        });
    }
    Ok(body)
}

/// Replaces the first `size` bytes of the buffered response body.
pub fn replace_response_body(size: usize, body: &[u8]) -> Result<(), HostError> {
    hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, body).map_err(|status| HostError {
        call: "set response body",
        status,
    })
}

/// A filter-state value (`set_filter_state` stamps the TLS group and
/// cipher there; a client cannot set it).
pub fn filter_state(key: &str) -> Option<String> {
    property(vec!["filter_state", key])
}

/// `connection.id`: the downstream connection's id, unique within the
/// Envoy process (a little-endian u64); `None` when the host has none.
pub fn connection_id() -> Option<u64> {
    match hostcalls::get_property(vec!["connection", "id"]) {
        Ok(Some(b)) => <[u8; 8]>::try_from(b.as_slice())
            .ok()
            .map(u64::from_le_bytes),
        Ok(None) | Err(_) => None,
    }
}

/// `connection.tls_version` (`TLSv1.3`), absent on plaintext.
pub fn tls_version() -> Option<String> {
    property(vec!["connection", "tls_version"])
}

/// Milliseconds since the Unix epoch from the host clock; `None` when the
/// host cannot tell (the engine then refuses: no clock, no expiry check).
pub fn now_millis() -> Option<u64> {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether the downstream connection presented a verified client certificate.
pub fn mtls() -> bool {
    matches!(hostcalls::get_property(vec!["connection", "mtls"]), Ok(Some(b)) if b.first() == Some(&1))
}

/// SHA-256 of the verified client certificate, hex (mTLS only).
pub fn peer_certificate_digest() -> Option<String> {
    property(vec!["connection", "sha256_peer_certificate_digest"]).filter(|d| !d.is_empty())
}

/// The upstream cluster a request was routed to.
pub fn cluster_name() -> Option<String> {
    property(vec!["xds", "cluster_name"]).filter(|c| !c.is_empty())
}

/// Reads process-wide shared data: value and compare-and-swap token
/// (`None`, `None` when absent; `Err` when the host fails).
pub fn shared_get(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
    hostcalls::get_shared_data(key).map_err(|status| HostError {
        call: "get shared data",
        status,
    })
}

/// Writes shared data if nobody changed it since `cas` was read.
/// `Ok(false)` means somebody did: read again and retry.
pub fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, HostError> {
    match hostcalls::set_shared_data(key, Some(value), cas) {
        Ok(()) => Ok(true),
        Err(Status::CasMismatch) => Ok(false),
        Err(status) => Err(HostError {
            call: "set shared data",
            status,
        }),
    }
}

/// Defines a counter (`wasmcustom.<name>` in Envoy's stats).
pub fn define_counter(name: &str) -> Option<u32> {
    hostcalls::define_metric(proxy_wasm::types::MetricType::Counter, name).ok()
}

/// Defines a gauge (`wasmcustom.<name>` in Envoy's stats).
pub fn define_gauge(name: &str) -> Option<u32> {
    hostcalls::define_metric(proxy_wasm::types::MetricType::Gauge, name).ok()
}

/// Sets a gauge.
pub fn set_gauge(metric: u32, value: u64) {
    let _ = hostcalls::record_metric(metric, value);
}

/// The bytes of this VM's linear memory (grows, never shrinks); `None`
/// outside wasm.
pub fn vm_memory_bytes() -> Option<u64> {
    #[cfg(target_arch = "wasm32")]
    {
        let pages = core::arch::wasm32::memory_size(0);
        Some(
            u64::try_from(pages)
                .unwrap_or(u64::MAX)
                .saturating_mul(65_536),
        )
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        None
    }
}

/// Adds to a counter.
pub fn increment(metric: u32, by: i64) {
    let _ = hostcalls::increment_metric(metric, by);
}

/// Starts an HTTP call to a cluster; the answer arrives in the calling
/// context's `on_http_call_response`. Returns the call's token.
pub fn dispatch(
    cluster: &str,
    headers: &[(&str, String)],
    body: Option<&[u8]>,
    timeout_ms: u64,
) -> Result<u32, HostError> {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    hostcalls::dispatch_http_call(
        cluster,
        headers,
        body,
        vec![],
        std::time::Duration::from_millis(timeout_ms),
    )
    .map_err(|status| HostError {
        call: "dispatch http call",
        status,
    })
}

/// A header of the answer to an HTTP call (in `on_http_call_response`).
pub fn call_response_header(name: &str) -> Option<String> {
    match hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name) {
        Ok(Some(b)) => String::from_utf8(b).ok(),
        _ => None,
    }
}

/// The body of the answer to an HTTP call.
pub fn call_response_body(size: usize) -> Vec<u8> {
    if size == 0 {
        return Vec::new();
    }
    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Asks the host to call `on_tick` every `period`.
pub fn set_tick(period: std::time::Duration) {
    let _ = hostcalls::set_tick_period(period);
}

/// Envoy's id of the current request (`x-request-id`), for audit records.
pub fn request_id() -> Option<String> {
    property(vec!["request", "id"]).filter(|s| !s.is_empty())
}

/// 32 random bytes (WASI `random_get`): the seed of the binding DRBG.
pub fn random32() -> Option<[u8; 32]> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).ok()?;
    Some(b)
}

/// 8 random bytes (WASI `random_get`, served by the host).
pub fn random8() -> Option<[u8; 8]> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).ok()?;
    Some(b)
}
