//! Drives the built `pqguard.wasm` through a second proxy-wasm host,
//! [`proxy_wasm_host`] (wasmtime, ABI 0.2.1), the way a proxy would: one
//! [`Fleet`] compiles the module once and shares one store of shared data,
//! one log and one outbox of HTTP calls between its [`Worker`]s (one guest
//! each, like Envoy's worker threads). A [`Worker`] runs one [`Request`]
//! through the guest and, when the guest forwards it, the answer of an
//! upstream the test writes; the [`Outcome`] says what the client got and
//! what the upstream saw.
//!
//! The host offers only what a test lends it: a property (Envoy's
//! `filter_state` TLS facts, `connection.tls_version`) exists only when the
//! request carries it, so the tests can check that a missing fact counts as
//! the weakest value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use proxy_wasm_host::abi::v0_2_1::types::{Action, BufferType, LogLevel, MapType, Status};
use proxy_wasm_host::abi::v0_2_1::{
    Access, CalloutId, Callouts, Clock, ContextId, Guest, GuestError, GuestId, Host, HttpCall,
    HttpCallRefusal, HttpCallResponse, InMemoryStore, Invocation, LocalResponse, LogContext,
    LogSink, PluginConfig, Started, StreamKind, StreamState, VmServices,
};
use proxy_wasm_host::{Buffer, Engine, HeaderMap, HeaderMapExt, Limits, Module, VecHeaderMap};

/// The module under test: `PQGUARD_WASM`, else `dist/pqguard.wasm` of this
/// checkout (`just build`).
pub fn wasm_path() -> PathBuf {
    match std::env::var_os("PQGUARD_WASM") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../dist/pqguard.wasm"),
    }
}

/// Locks a mutex, recovering the data of a poisoned one (a failed test
/// must not hide the log of the next).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Every line the guests logged, in order.
#[derive(Default)]
pub struct Logs(Mutex<Vec<(LogLevel, String)>>);

impl Logs {
    /// The lines logged so far at or above `level`.
    pub fn at_least(&self, level: LogLevel) -> Vec<String> {
        lock(&self.0)
            .iter()
            .filter(|(l, _)| (*l as i32) >= (level as i32))
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// Every line logged so far.
    pub fn all(&self) -> Vec<String> {
        self.at_least(LogLevel::Trace)
    }
}

impl LogSink for Logs {
    fn log(&self, _: LogContext<'_>, level: LogLevel, message: &[u8]) {
        lock(&self.0).push((level, String::from_utf8_lossy(message).into_owned()));
    }
}

/// A clock the test sets (nanoseconds since the Unix epoch); 0 means "the
/// real time".
#[derive(Default)]
pub struct TestClock(AtomicU64);

impl TestClock {
    /// Makes the guests read `unix_seconds` as the time.
    pub fn set(&self, unix_seconds: u64) {
        self.0.store(unix_seconds * 1_000_000_000, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn realtime_nanos(&self) -> u64 {
        match self.0.load(Ordering::SeqCst) {
            0 => proxy_wasm_host::abi::v0_2_1::SystemClock.realtime_nanos(),
            fixed => fixed,
        }
    }

    fn monotonic_nanos(&self) -> u64 {
        proxy_wasm_host::abi::v0_2_1::SystemClock.monotonic_nanos()
    }
}

/// An HTTP call a guest made and nobody has answered yet.
#[derive(Debug, Clone)]
pub struct PendingCall {
    /// The guest that made it.
    pub guest: GuestId,
    /// The context that made it (where the answer goes).
    pub context: ContextId,
    /// The host's id of the call.
    pub callout: CalloutId,
    /// The cluster the guest named.
    pub upstream: String,
    /// The request headers, pseudo-headers included.
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Vec<u8>,
}

impl PendingCall {
    /// A request header of the call.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The HTTP calls guests made, kept until a test answers them.
#[derive(Default)]
pub struct Outbox(Mutex<Vec<PendingCall>>);

impl Outbox {
    /// Takes every pending call out.
    pub fn take(&self) -> Vec<PendingCall> {
        std::mem::take(&mut lock(&self.0))
    }
}

fn text_pairs(pairs: &proxy_wasm_host::abi::v0_2_1::HeaderPairs<'_>) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

impl Callouts for Outbox {
    fn http_call(
        &self,
        call: Invocation,
        callout: CalloutId,
        request: HttpCall<'_>,
    ) -> Result<(), HttpCallRefusal> {
        lock(&self.0).push(PendingCall {
            guest: call.guest,
            context: call.context,
            callout,
            upstream: String::from_utf8_lossy(&request.upstream).into_owned(),
            headers: text_pairs(&request.headers),
            body: request.body.into_owned(),
        });
        Ok(())
    }
}

/// The module, compiled once per test process, and the host functions
/// linked for it.
fn compiled() -> &'static (Host, Module) {
    static COMPILED: OnceLock<(Host, Module)> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let path = wasm_path();
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run `just build` first)", path.display()));
        let engine = Engine::new().unwrap_or_else(|e| panic!("wasmtime engine: {e}"));
        let module = Module::new(&engine, &bytes)
            .unwrap_or_else(|e| panic!("{}: does not compile: {e}", path.display()));
        let host = Host::new(&engine).unwrap_or_else(|e| panic!("host functions: {e}"));
        (host, module)
    })
}

/// What a set of workers share: shared data, the log, the outbox of HTTP
/// calls and the clock (the module itself is compiled once per process).
pub struct Fleet {
    shared: Arc<InMemoryStore>,
    /// Every line every worker logged.
    pub logs: Arc<Logs>,
    /// HTTP calls waiting for an answer.
    pub outbox: Arc<Outbox>,
    /// The time the workers read.
    pub clock: Arc<TestClock>,
}

/// Why a worker did not start.
#[derive(Debug)]
pub enum StartError {
    /// The guest refused its configuration (`on_configure` answered false).
    Refused,
    /// The host failed (trap, link error, ...).
    Host(GuestError),
}

impl Fleet {
    /// A new fleet of the module at [`wasm_path`], with nothing shared yet.
    pub fn load() -> Self {
        Self {
            shared: Arc::new(InMemoryStore::new()),
            logs: Arc::default(),
            outbox: Arc::default(),
            clock: Arc::default(),
        }
    }

    /// A new worker (one guest) configured with `config` (JSON).
    pub fn worker(&self, config: &str) -> Result<Worker, StartError> {
        let services = VmServices::new(self.logs.clone())
            .with_clock(self.clock.clone())
            .with_shared(self.shared.clone())
            .with_callouts(self.outbox.clone())
            .with_log_level(LogLevel::Info);
        let (host, module) = compiled();
        let mut guest =
            Guest::new(host, module, services, &Limits::default()).map_err(StartError::Host)?;
        let plugin = PluginConfig::new()
            .with_name("pqguard")
            .with_root_id("pqguard")
            .with_configuration(config.as_bytes().to_vec());
        match guest.start(plugin).map_err(StartError::Host)? {
            Started::Serving(root) => Ok(Worker { guest, root }),
            Started::Refused { .. } => Err(StartError::Refused),
        }
    }
}

/// A request as the proxy hands it to the filter.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Headers, pseudo-headers (`:method`, `:path`, ...) included.
    pub headers: Vec<(String, String)>,
    /// The whole body (delivered in one piece, end of stream).
    pub body: Vec<u8>,
    /// Properties the host answers, by path (`["filter_state",
    /// "pqguard.tls_group"]`); any other property is absent.
    pub properties: BTreeMap<Vec<String>, Vec<u8>>,
}

impl Request {
    /// A `POST /mcp` with a JSON body and the headers an MCP client sends.
    pub fn mcp(body: &str) -> Self {
        Self {
            headers: [
                (":method", "POST"),
                (":path", "/mcp"),
                (":authority", "mcp.test"),
                (":scheme", "https"),
                ("content-type", "application/json"),
                ("accept", "application/json, text/event-stream"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
            body: body.as_bytes().to_vec(),
            properties: BTreeMap::new(),
        }
    }

    /// Adds (or repeats) a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Removes every value of a header.
    #[must_use]
    pub fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(k, _)| k != name);
        self
    }

    /// Sets a property the host will answer.
    #[must_use]
    pub fn property(mut self, path: &[&str], value: &str) -> Self {
        self.properties.insert(
            path.iter().map(|s| (*s).to_owned()).collect(),
            value.as_bytes().to_vec(),
        );
        self
    }

    /// The TLS facts Envoy's `set_filter_state` and connection give: the
    /// key-exchange group in filter state, TLS 1.3.
    #[must_use]
    pub fn over_tls(self, group: &str) -> Self {
        self.property(&["filter_state", "pqguard.tls_group"], group)
            .property(
                &["filter_state", "pqguard.tls_cipher"],
                "TLS_AES_128_GCM_SHA256",
            )
            .property(&["connection", "tls_version"], "TLSv1.3")
    }
}

/// An HTTP answer: a local reply of the filter, or the upstream's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// The status.
    pub status: u32,
    /// Headers (without `:status`).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A 200 answer with a JSON body.
    pub fn json(body: &str) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    /// A header of the answer.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json_body(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A request as the upstream received it: headers and body.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// Headers, pseudo-headers included.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// What happened to one request.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What the client got: the filter's local reply, or the upstream's
    /// answer as the filter let it through.
    pub client: Response,
    /// Whether the filter answered itself (nothing was forwarded).
    pub local: bool,
    /// The request as the upstream saw it, if it was forwarded.
    pub upstream: Option<Forwarded>,
}

impl Outcome {
    /// A request header as the upstream saw it.
    pub fn upstream_header(&self, name: &str) -> Option<&str> {
        self.upstream
            .as_ref()
            .and_then(|f| f.headers.iter().find(|(k, _)| k == name))
            .map(|(_, v)| v.as_str())
    }
}

/// The per-request state lent to the guest.
struct Stream {
    request_headers: VecHeaderMap,
    request_body: Vec<u8>,
    response_headers: VecHeaderMap,
    response_body: Vec<u8>,
    properties: BTreeMap<Vec<String>, Vec<u8>>,
    local: Option<LocalResponse<'static>>,
}

impl StreamState for Stream {
    fn header_map(
        &mut self,
        _: Invocation,
        _: Access,
        map: MapType,
    ) -> Result<&mut dyn HeaderMap, Status> {
        match map {
            MapType::HttpRequestHeaders => Ok(&mut self.request_headers),
            MapType::HttpResponseHeaders => Ok(&mut self.response_headers),
            _ => Err(Status::NotFound),
        }
    }

    fn buffer(
        &mut self,
        _: Invocation,
        _: Access,
        buffer: BufferType,
    ) -> Result<&mut dyn Buffer, Status> {
        match buffer {
            BufferType::HttpRequestBody => Ok(&mut self.request_body),
            BufferType::HttpResponseBody => Ok(&mut self.response_body),
            _ => Err(Status::NotFound),
        }
    }

    fn send_local_response(
        &mut self,
        _: Invocation,
        response: LocalResponse<'_>,
    ) -> Result<(), Status> {
        self.local = Some(response.into_owned());
        Ok(())
    }

    fn continue_stream(
        &mut self,
        _: Invocation,
        _: proxy_wasm_host::abi::v0_2_1::types::StreamType,
    ) -> Result<(), Status> {
        Ok(())
    }

    fn property(&mut self, _: Invocation, path: &[&[u8]], out: &mut Vec<u8>) -> Result<(), Status> {
        let key: Vec<String> = path
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        match self.properties.get(&key) {
            Some(value) => {
                out.extend_from_slice(value);
                Ok(())
            }
            None => Err(Status::NotFound),
        }
    }
}

fn header_pairs(headers: &[(String, String)]) -> VecHeaderMap {
    headers
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

fn text_map(map: &VecHeaderMap) -> Vec<(String, String)> {
    map.pairs()
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(&k).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect()
}

fn local_response(local: &LocalResponse<'_>) -> Response {
    Response {
        status: local.status_code,
        headers: text_pairs(&local.headers),
        body: local.body.to_vec(),
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One guest (one VM, like one Envoy worker) with its configured root.
pub struct Worker {
    guest: Guest,
    root: ContextId,
}

impl Worker {
    /// Runs `request` through the guest. If the filter forwards it,
    /// `upstream` answers (it sees the request as forwarded) and the answer
    /// goes back through the filter's response callbacks.
    pub fn exchange(
        &mut self,
        request: Request,
        upstream: impl FnOnce(&[(String, String)], &[u8]) -> Response,
    ) -> Result<Outcome, GuestError> {
        let root = self.root;
        let has_body = !request.body.is_empty();
        let stream = Stream {
            request_headers: header_pairs(&request.headers),
            request_body: request.body,
            response_headers: VecHeaderMap::default(),
            response_body: Vec::new(),
            properties: request.properties,
            local: None,
        };
        let n_headers = count(request.headers.len());
        let (answer, _) = self.guest.with(stream, |scope| {
            let id = scope.on_context_create(Some(root))?;
            scope.expect_stream_kind(id, StreamKind::Http)?;
            let outcome = Self::run(scope, id, n_headers, has_body, upstream);
            scope.on_done(id)?;
            scope.on_log(id)?;
            scope.on_delete(id)?;
            outcome
        });
        answer
    }

    fn run(
        scope: &mut proxy_wasm_host::abi::v0_2_1::CallScope<'_, Stream>,
        id: ContextId,
        n_headers: u32,
        has_body: bool,
        upstream: impl FnOnce(&[(String, String)], &[u8]) -> Response,
    ) -> Result<Outcome, GuestError> {
        let replied = |scope: &proxy_wasm_host::abi::v0_2_1::CallScope<'_, Stream>| {
            scope.stream().local.as_ref().map(|l| Outcome {
                client: local_response(l),
                local: true,
                upstream: None,
            })
        };
        let mut action = scope.on_request_headers(id, n_headers, !has_body)?;
        if let Some(outcome) = replied(scope) {
            return Ok(outcome);
        }
        if has_body {
            let size = count(scope.stream().request_body.len());
            action = scope.on_request_body(id, size, true)?;
            if let Some(outcome) = replied(scope) {
                return Ok(outcome);
            }
        }
        // A filter that holds a complete request without answering would
        // hang it in a proxy: report it as an error status the tests see.
        if action == Action::Pause {
            return Ok(Outcome {
                client: Response {
                    status: 0,
                    headers: vec![],
                    body: b"held".to_vec(),
                },
                local: true,
                upstream: None,
            });
        }
        let seen_headers = text_map(&scope.stream().request_headers);
        let seen_body = scope.stream().request_body.clone();
        let answer = upstream(&seen_headers, &seen_body);
        {
            let stream = scope.stream_mut();
            let mut headers = vec![(":status".to_owned(), answer.status.to_string())];
            headers.extend(answer.headers.iter().cloned());
            stream.response_headers = header_pairs(&headers);
            stream.response_body = answer.body.clone();
        }
        let n = count(answer.headers.len() + 1);
        scope.on_response_headers(id, n, answer.body.is_empty())?;
        if !answer.body.is_empty() {
            let size = count(answer.body.len());
            scope.on_response_body(id, size, true)?;
        }
        let stream = scope.stream();
        let client = match &stream.local {
            Some(local) => local_response(local),
            None => Response {
                status: answer.status,
                headers: text_map(&stream.response_headers)
                    .into_iter()
                    .filter(|(k, _)| k != ":status")
                    .collect(),
                body: stream.response_body.clone(),
            },
        };
        Ok(Outcome {
            client,
            local: stream.local.is_some(),
            upstream: Some(Forwarded {
                headers: seen_headers,
                body: seen_body,
            }),
        })
    }

    /// Runs the guest's timer once (checkpoints, audit shipping, key set
    /// refresh).
    pub fn tick(&mut self) -> Result<(), GuestError> {
        let root = self.root;
        self.guest.enter_root().on_tick(root)
    }

    /// The timer period the guest asked for, if any.
    pub fn tick_period(&self) -> Option<std::time::Duration> {
        self.guest.tick_period(self.root)
    }

    /// Answers an HTTP call this guest made.
    pub fn answer(
        &mut self,
        call: &PendingCall,
        response: Option<Response>,
    ) -> Result<(), GuestError> {
        let response = match response {
            Some(r) => {
                let mut headers = vec![(b":status".to_vec(), r.status.to_string().into_bytes())];
                headers.extend(
                    r.headers
                        .iter()
                        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())),
                );
                HttpCallResponse::received(
                    headers
                        .into_iter()
                        .map(|(k, v)| (k.into(), v.into()))
                        .collect(),
                )
                .with_body(r.body)
            }
            None => HttpCallResponse::failed(),
        };
        self.guest
            .enter_root()
            .on_http_call_response(call.context, call.callout, response)
    }

    /// This guest's id (to pick its own calls out of the outbox).
    pub fn id(&self) -> GuestId {
        self.guest.id()
    }

    /// Whether a trap poisoned the guest.
    pub fn is_poisoned(&self) -> bool {
        self.guest.is_poisoned()
    }
}
