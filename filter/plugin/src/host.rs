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

use pqguard_core::config::Config;
use pqguard_core::crypto::CryptoFacts;
use pqguard_core::reject::{Reason, Rejection};
use pqguard_core::request::RequestHead;
use pqguard_core::wire::LocalReply;

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

/// Copies the request head facts the core needs, from all request headers
/// at once (so repeated headers are seen). Called once, in the
/// request-headers callback (request headers are gone later).
pub fn request_head() -> Result<RequestHead, Rejection> {
    let headers = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).map_err(|status| {
        Rejection::new(
            Reason::HostError,
            HostError {
                call: "get request headers",
                status,
            }
            .to_string(),
        )
    })?;
    RequestHead::from_headers(headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
}

/// A response header, read in the response-headers callback.
pub fn response_header(name: &str) -> Option<String> {
    match hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, name) {
        Ok(Some(bytes)) => String::from_utf8(bytes).ok(),
        Ok(None) | Err(_) => None,
    }
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

/// Reads the downstream connection's crypto facts: the TLS version from a
/// connection property, the group and cipher from the filter state that
/// `envoy.filters.http.set_filter_state` stamped (a client cannot set it).
pub fn crypto_facts(config: &Config) -> CryptoFacts {
    CryptoFacts::new(
        property(vec!["connection", "tls_version"]),
        property(vec!["filter_state", &config.tls_group_key]),
        property(vec!["filter_state", &config.tls_cipher_key]),
    )
}
