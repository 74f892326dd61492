//! `pqguard proxy`: a local forward proxy that gives any MCP client, unchanged,
//! an ML-KEM bound session and a post-quantum hop to the edge.
//!
//! The client talks plain HTTP to the proxy on a loopback address. The proxy
//! binds once (and again when the edge says `pqguard_binding="rebind"`),
//! adds the bearer token, or the session ticket the bind answer carried,
//! and a `PQGuard-Binding` proof to every request,
//! and forwards it over TLS 1.3 offering X25519MLKEM768 only, so the hop to
//! the edge is post-quantum even when the client's own TLS library has no
//! post-quantum group. Answers (JSON or event streams, GET streams, the
//! `Mcp-Session-Id` header) pass through as they arrive.
//!
//! The proxy holds a credential for whoever reaches it, so it listens on
//! loopback only (unless `--allow-remote`), answers only requests whose
//! `Host` names its own loopback listener and whose `Origin`, if any, is
//! that listener (a web page reaching 127.0.0.1 through DNS rebinding, or
//! posting across sites, gets 403), and wipes its key material when done.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pqguard_core::bind::{
    self, BoundHeaders, ClientKey, Covered, Issued, Proof, BIND_PATH, PROOF_HEADER,
};
use pqguard_core::ticket::TICKET_HEADER;
use pqguard_core::token::{base64url_decode, base64url_encode, token_digest};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::cli::ProxyArgs;
use crate::read_input;

/// Largest request body the proxy holds (it must hash the body for the proof).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Request headers the proxy sets itself.
const REPLACED: [&str; 3] = ["authorization", PROOF_HEADER, TICKET_HEADER];

type Body = BoxBody<Bytes, hyper::Error>;

/// A binding in force.
#[derive(Clone)]
struct Binding {
    id: String,
    key: Zeroizing<[u8; 32]>,
    expires_at: u64,
    /// The session ticket of the binding, sent instead of the token when
    /// the edge issued one, and its SHA3-256 (what proofs then cover).
    ticket: Option<(String, [u8; 32])>,
    /// Bind again this many seconds before expiry (a quarter of the
    /// binding's life, at most 5 s), so requests rarely meet a 401.
    margin: u64,
}

struct State {
    origin: String,
    /// The edge's authority as the proxy sends it (`:authority` / `Host`),
    /// covered by every proof.
    authority: String,
    /// `Host` values that name this proxy's listener (empty with
    /// `--allow-remote`: any).
    local_hosts: Vec<String>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    token: String,
    token_digest: [u8; 32],
    key: ClientKey,
    ek: String,
    binding: Mutex<Option<Binding>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn text(status: StatusCode, message: String) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(message))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
}

/// The TLS client: TLS 1.3, X25519MLKEM768 only, the given CA (or the
/// system's roots), certificate name `server_name` when given.
fn https(
    ca: Option<&str>,
    server_name: Option<&str>,
) -> Result<HttpsConnector<HttpConnector>, String> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519MLKEM768];
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let pem = read_input(Some(path))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("{path}: {e}"))?;
                roots.add(cert).map_err(|e| format!("{path}: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("{path}: no certificate"));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err("no system root certificates: give --ca".into());
            }
        }
    }
    let config = builder.with_root_certificates(roots).with_no_client_auth();
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only();
    let builder = match server_name {
        Some(name) => {
            let name = ServerName::try_from(name.to_owned())
                .map_err(|e| format!("--server-name {name:?}: {e}"))?;
            builder.with_server_name_resolver(FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    Ok(builder.enable_http1().enable_http2().build())
}

impl State {
    /// The binding in force, made (or made again with `fresh`) when needed.
    async fn binding(&self, fresh: bool) -> Result<Binding, String> {
        let mut slot = self.binding.lock().await;
        if let Some(b) = slot.as_ref() {
            if !fresh && now() + b.margin < b.expires_at {
                return Ok(b.clone());
            }
        }
        let body = serde_json::json!({ "ek": self.ek }).to_string();
        let request = Request::post(format!("{}{BIND_PATH}", self.origin))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", self.token))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("bind: {e}"))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("bind: {e}"))?;
        let status = response.status();
        let answer = Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await
            .map_err(|e| format!("bind: {e}"))?
            .to_bytes();
        if status != StatusCode::OK {
            return Err(format!(
                "bind: HTTP {status}: {}",
                String::from_utf8_lossy(&answer)
            ));
        }
        let issued = Issued::from_json(&answer).map_err(|e| e.to_string())?;
        let key = self.key.open(&issued).map_err(|e| e.to_string())?;
        let ticket = serde_json::from_slice::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v.get("ticket")?.as_str().map(str::to_owned))
            .map(|t| {
                let digest = bind::sha3(t.as_bytes());
                (t, digest)
            });
        let binding = Binding {
            id: issued.id,
            key: Zeroizing::new(key),
            ticket,
            margin: (issued.expires_at.saturating_sub(now()) / 4).min(5),
            expires_at: issued.expires_at,
        };
        eprintln!(
            "pqguard proxy: bound as {} (until {}){}",
            binding.id,
            binding.expires_at,
            if binding.ticket.is_some() {
                ", with a session ticket"
            } else {
                ""
            }
        );
        *slot = Some(binding.clone());
        Ok(binding)
    }

    /// The request to the edge: the client's headers (minus hop-by-hop),
    /// the token and the proof over exactly what is sent.
    fn upstream_request(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &Bytes,
        binding: &Binding,
    ) -> Result<Request<Full<Bytes>>, String> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| format!("no randomness: {e}"))?;
        let header = |name: &str| -> Result<Option<&str>, String> {
            match headers.get(name) {
                None => Ok(None),
                Some(v) => v
                    .to_str()
                    .map(Some)
                    .map_err(|_| format!("header {name} is not visible ASCII")),
            }
        };
        let covered = Covered {
            method: method.as_str(),
            path,
            headers: BoundHeaders {
                authority: Some(&self.authority),
                session_id: header("mcp-session-id")?,
                protocol_version: header("mcp-protocol-version")?,
                mcp_method: header("mcp-method")?,
                mcp_name: header("mcp-name")?,
            },
            body_digest: &bind::sha3(body),
            token_digest: binding
                .ticket
                .as_ref()
                .map_or(&self.token_digest, |(_, digest)| digest),
        };
        let proof = Proof::new(&binding.id, &binding.key, &covered, now(), &nonce);
        let uri: Uri = format!("{}{path}", self.origin)
            .parse()
            .map_err(|e| format!("upstream URI: {e}"))?;
        let mut request = Request::builder().method(method.clone()).uri(uri);
        for (name, value) in headers {
            let name_str = name.as_str();
            if name == hyper::header::HOST
                || HOP_BY_HOP.contains(&name_str)
                || REPLACED.contains(&name_str)
            {
                continue;
            }
            request = request.header(name, value);
        }
        let request = match &binding.ticket {
            Some((ticket, _)) => request.header(TICKET_HEADER, ticket.as_str()),
            None => request.header("authorization", format!("Bearer {}", self.token)),
        };
        request
            .header(PROOF_HEADER, proof.to_header())
            .body(Full::new(body.clone()))
            .map_err(|e| e.to_string())
    }

    /// Why a request may not use the credential: a `Host` that does not
    /// name this listener (DNS rebinding), or an `Origin` other than it (a
    /// web page posting across sites).
    fn refused_origin(&self, headers: &HeaderMap) -> Option<String> {
        let host = headers
            .get(hyper::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        if !self.local_hosts.is_empty() {
            match host.as_deref() {
                Some(h) if self.local_hosts.iter().any(|l| l == h) => {}
                other => {
                    return Some(format!(
                        "Host {:?} does not name this proxy's loopback listener",
                        other.unwrap_or("")
                    ))
                }
            }
        }
        let origins = headers.get_all(hyper::header::ORIGIN);
        for origin in &origins {
            let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
            let same = host
                .as_deref()
                .is_some_and(|h| origin == format!("http://{h}"));
            if !same {
                return Some(format!("cross-site Origin {origin:?}"));
            }
        }
        None
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        if let Some(why) = self.refused_origin(request.headers()) {
            return text(StatusCode::FORBIDDEN, format!("pqguard proxy: {why}\n"));
        }
        let (parts, incoming) = request.into_parts();
        let body = match Limited::new(incoming, MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body: {e}\n"),
                )
            }
        };
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let mut fresh = false;
        let mut rebound = false;
        let mut retries = 0;
        loop {
            let binding = match self.binding(fresh).await {
                Ok(b) => b,
                Err(e) => return text(StatusCode::BAD_GATEWAY, format!("{e}\n")),
            };
            let upstream = match self.upstream_request(
                &parts.method,
                &path,
                &parts.headers,
                &body,
                &binding,
            ) {
                Ok(r) => r,
                Err(e) => return text(StatusCode::BAD_GATEWAY, format!("{e}\n")),
            };
            let response = match self.client.request(upstream).await {
                Ok(r) => r,
                Err(e) => return text(StatusCode::BAD_GATEWAY, format!("upstream: {e}\n")),
            };
            let rebind = response.status() == StatusCode::UNAUTHORIZED
                && response
                    .headers()
                    .get_all(hyper::header::WWW_AUTHENTICATE)
                    .iter()
                    .any(|v| {
                        v.to_str()
                            .is_ok_and(|s| s.contains("pqguard_binding=\"rebind\""))
                    });
            if rebind && !rebound {
                // The binding expired or its secret was retired: bind again, once.
                fresh = true;
                rebound = true;
                continue;
            }
            fresh = false;
            let busy = matches!(
                response.status(),
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
            );
            let wait = response
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if let (true, Some(wait), true) = (busy, wait, retries < 2) {
                // The edge's replay set is full or the binding is over its
                // quota (the request was not forwarded): wait, then send it
                // again with a new proof.
                if wait <= 10 {
                    retries += 1;
                    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
                    continue;
                }
            }
            let (mut head, body) = response.into_parts();
            for name in HOP_BY_HOP {
                head.headers.remove(name);
            }
            return Response::from_parts(head, body.boxed());
        }
    }
}

/// `pqguard proxy`: runs until interrupted.
pub fn proxy(a: &ProxyArgs) -> Result<std::process::ExitCode, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(serve(a))?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn serve(a: &ProxyArgs) -> Result<(), String> {
    let upstream: Uri = a
        .upstream
        .parse()
        .map_err(|e| format!("--upstream {:?}: {e}", a.upstream))?;
    if upstream.scheme_str() != Some("https") {
        return Err("--upstream must be an https:// URL".into());
    }
    if !a.listen.ip().is_loopback() && !a.allow_remote {
        return Err(format!(
            "--listen {}: not a loopback address; the proxy adds your token to whatever reaches it (--allow-remote to accept that)",
            a.listen
        ));
    }
    let authority = upstream.authority().ok_or("--upstream has no host")?;
    // As HTTP clients send it: the port only when it is not https' default.
    let authority = match authority.port_u16() {
        Some(443) => authority.host().to_owned(),
        _ => authority.as_str().to_owned(),
    };
    let token = String::from_utf8(read_input(Some(&a.token_file))?)
        .map_err(|_| format!("{}: not UTF-8", a.token_file))?
        .trim()
        .to_owned();
    let seed: Zeroizing<[u8; 64]> = match &a.key {
        Some(path) => {
            let file = Zeroizing::new(read_input(Some(path))?);
            let doc: serde_json::Value =
                serde_json::from_slice(&file).map_err(|e| format!("{path}: {e}"))?;
            let decoded = Zeroizing::new(
                doc.get("seed")
                    .and_then(serde_json::Value::as_str)
                    .and_then(|s| base64url_decode(s.as_bytes()).ok())
                    .unwrap_or_default(),
            );
            let seed: [u8; 64] = decoded
                .as_slice()
                .try_into()
                .map_err(|_| format!("{path}: no 64-byte base64url seed"))?;
            Zeroizing::new(seed)
        }
        None => {
            let mut seed = Zeroizing::new([0u8; 64]);
            getrandom::fill(seed.as_mut_slice()).map_err(|e| format!("no randomness: {e}"))?;
            seed
        }
    };
    let key = ClientKey::from_seed(&seed);
    let ek = base64url_encode(&key.encapsulation_key());
    let client = Client::builder(TokioExecutor::new())
        .build(https(a.ca.as_deref(), a.server_name.as_deref())?);
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", a.listen))?;
    let local: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
    let local_hosts = if a.allow_remote {
        Vec::new()
    } else {
        let port = local.port();
        vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ]
    };
    let state = Arc::new(State {
        origin: format!("https://{authority}"),
        authority,
        local_hosts,
        client,
        token_digest: token_digest(&token),
        token,
        key,
        ek,
        binding: Mutex::new(None),
    });
    eprintln!(
        "pqguard proxy: listening on http://{local}, forwarding to {} over TLS 1.3 with X25519MLKEM768 only",
        state.origin
    );
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted.map_err(|e| format!("accept: {e}"))?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(state.handle(request).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
