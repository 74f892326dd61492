//! ML-KEM bound sessions in the request path (see [`crate::bind`]): the
//! bind endpoint, and the proof a bound request carries.

use serde_json::Value;

use super::*;
use crate::bind::{self, BindError, BoundHeaders, Covered, Proof, BIND_PATH};
use crate::token::base64url_decode;

/// The answer for a refused binding, with what the client should do: 401,
/// or 503 (the replay set is full) and 429 (the binding is over its quota)
/// with `Retry-After`.
fn rejection(e: &BindError) -> Rejection {
    let reason = match e {
        BindError::Busy => Reason::BindingBusy,
        BindError::Quota => Reason::BindingQuota,
        _ => Reason::Unauthorized,
    };
    let mut r = Rejection::new(reason, format!("binding: {e}"));
    r.code = Some(e.code());
    r.binding = Some(e.hint());
    r
}

impl Exchange {
    /// Whether this request is for the bind endpoint (binding configured).
    pub(super) fn is_bind_request(&self, w: &Worker) -> bool {
        w.config().binding.is_some() && self.head.path.split('?').next() == Some(BIND_PATH)
    }

    /// After the token check, on the head: the token's confirmation (`cnf`,
    /// RFC 7800), the bind endpoint's preconditions, or the form of the
    /// request's proof (its MAC covers the body, so it is checked by
    /// [`Exchange::check_proof`]).
    ///
    /// A token whose `cnf` names a method this filter does not check is
    /// refused, with or without a `binding` section; `x5t#S256` is checked
    /// against the client certificate (`peer_digest`, hex SHA-256, mTLS
    /// only); `mlkem#S3-256` needs a binding proof (`require_for_cnf`).
    pub(super) fn binding_head(
        &mut self,
        w: &Worker,
        peer_digest: Option<&str>,
    ) -> Result<(), Rejection> {
        let confirmation = match self.token.as_deref() {
            Some(t) => bind::confirmation(&t.claims).map_err(|e| rejection(&e))?,
            None => None,
        };
        let settings = w.config().binding.as_ref();
        if let Some(c) = &confirmation {
            if c.mlkem.is_some() && settings.is_none() {
                return Err(rejection(&BindError::UnsupportedConfirmation(
                    "mlkem#S3-256 without a binding section",
                )));
            }
            if let Some(x5t) = &c.x5t {
                bind::confirm_certificate(x5t, peer_digest).map_err(|e| rejection(&e))?;
                self.proven = Some(bind::Mechanism::Certificate);
            }
        }
        self.confirmed_mlkem = confirmation.as_ref().is_some_and(|c| c.mlkem.is_some());
        let Some(settings) = settings else {
            if self.head.binding.is_some() {
                return Err(rejection(&BindError::Malformed(
                    "binding proofs are not configured here",
                )));
            }
            self.bound = self.proven.is_some();
            return Ok(());
        };
        if self.bind_endpoint {
            if self.head.http_method != "POST" {
                return Err(Rejection::new(
                    Reason::MethodNotAllowed,
                    "the bind endpoint takes POST",
                ));
            }
            if self.token.is_none() {
                return Err(rejection(&BindError::NoToken));
            }
            return Ok(());
        }
        match self.head.binding.as_deref() {
            Some(value) => {
                if self.token.is_none() {
                    return Err(rejection(&BindError::NoToken));
                }
                self.proof = Some(Proof::parse(value).map_err(|e| rejection(&e))?);
            }
            None => {
                if self.confirmed_mlkem && settings.require_for_cnf {
                    return Err(rejection(&BindError::Required));
                }
            }
        }
        // Without an ML-KEM confirmation, a matched certificate is the proof.
        self.bound = !self.confirmed_mlkem && self.proven.is_some();
        Ok(())
    }

    /// Checks the request's proof against the whole request: binding
    /// secret and expiry, time window, MAC (method, path, authority, MCP
    /// headers, body, token), the binding's quota, then replay. A request
    /// without a proof passes unbound. The request is *bound* only when its
    /// token confirms the ML-KEM key (`cnf`): the bind endpoint then let
    /// that key alone bind, so a proof shows the token's owner made it.
    pub(super) fn check_proof(
        &mut self,
        w: &mut Worker,
        store: &dyn SharedStore,
        body: &[u8],
    ) -> Result<(), Rejection> {
        let (Some(proof), Some(token)) = (self.proof.take(), self.token.clone()) else {
            return Ok(());
        };
        let now = self.started_ms / 1000;
        let body_digest = bind::sha3(body);
        {
            let Some(settings) = w.config().binding.as_ref() else {
                return Ok(());
            };
            let h = &self.head;
            let covered = Covered {
                method: &h.http_method,
                path: &h.path,
                headers: BoundHeaders {
                    authority: h.authority.as_deref(),
                    session_id: h.session_id.as_deref(),
                    protocol_version: h.protocol_version.as_deref(),
                    mcp_method: h.mirrors.method.as_deref(),
                    mcp_name: h.mirrors.name.as_deref(),
                },
                body_digest: &body_digest,
                token_digest: &token.digest,
            };
            proof
                .verify(&settings.secrets, &covered, now, settings.window_seconds)
                .map_err(|e| rejection(&e))?;
        }
        w.check_replay(store, &proof, now).map_err(|e| {
            let mut r = rejection(&e);
            r.retry_after = match e {
                BindError::Quota => {
                    Some(u16::try_from(w.quota_retry_after(&proof.id, now)).unwrap_or(u16::MAX))
                }
                BindError::Busy => Some(1),
                _ => None,
            };
            r
        })?;
        if self.confirmed_mlkem {
            self.proven = Some(bind::Mechanism::MlKem);
            self.bound = true;
        }
        Ok(())
    }

    /// Serves a bind request: `{"ek": "<base64url ML-KEM-768 encapsulation
    /// key>"}` with a valid token; answers the binding (see
    /// [`bind::Issued::to_json`]).
    pub(super) fn serve_bind(&mut self, w: &mut Worker, out: &mut Effects, body: &[u8]) -> Action {
        match self.bind(w, body) {
            Ok((reply, id)) => {
                out.count("pqguard.binding.issued", 1);
                if w.logs_info() {
                    let sub = self.token.as_deref().and_then(|t| t.claims.sub.as_deref());
                    out.log(
                        Level::Info,
                        format!(
                            "pqguard.binding {{\"binding_id\":{},\"sub\":{},\"kex_class\":{}}}",
                            json_string(&id),
                            sub.map_or_else(|| "null".to_owned(), json_string),
                            json_string(&self.facts.kex_class().to_string()),
                        ),
                    );
                }
                self.phase = Phase::Refused;
                Action::Reply(reply)
            }
            Err(rejection) => self.refuse(w, out, rejection),
        }
    }

    fn bind(&mut self, w: &mut Worker, body: &[u8]) -> Result<(LocalReply, String), Rejection> {
        let token = self
            .token
            .clone()
            .ok_or_else(|| rejection(&BindError::NoToken))?;
        let bad_body = || {
            Rejection::new(
                Reason::InvalidRequest,
                "bind: the body must be {\"ek\": \"<base64url ML-KEM-768 encapsulation key>\"}",
            )
        };
        let doc: Value = serde_json::from_slice(body).map_err(|_| bad_body())?;
        let ek = doc
            .get("ek")
            .and_then(Value::as_str)
            .and_then(|s| base64url_decode(s.as_bytes()).ok())
            .ok_or_else(bad_body)?;
        let (secret, ttl, allow_unconfirmed) = {
            let settings = w
                .config()
                .binding
                .as_ref()
                .ok_or_else(|| rejection(&BindError::UnknownSecret))?;
            let secret = settings
                .secrets
                .first()
                .cloned()
                .ok_or_else(|| rejection(&BindError::UnknownSecret))?;
            (
                secret,
                settings.ttl_seconds,
                settings.allow_unconfirmed_tokens,
            )
        };
        if ek.len() != bind::EK_LEN {
            return Err(bad_body());
        }
        bind::confirm(&ek, bind::cnf_thumbprint(&token.claims), allow_unconfirmed).map_err(
            |e| {
                let mut r = Rejection::new(Reason::Forbidden, format!("bind: {e}"));
                r.code = Some(e.code());
                r
            },
        )?;
        let Some(random) = w.binding_random() else {
            return Err(Rejection::new(
                Reason::HostError,
                "bind: no randomness from the host",
            ));
        };
        let now = self.started_ms / 1000;
        // A binding never outlives its token.
        let expires_at = now.saturating_add(ttl).min(token.claims.exp);
        let issued =
            bind::issue(&secret, &ek, &token.digest, expires_at, &random).map_err(|e| {
                let mut r = Rejection::new(Reason::InvalidRequest, format!("bind: {e}"));
                r.code = Some(e.code());
                r
            })?;
        let reply = LocalReply {
            status: 200,
            headers: vec![
                ("content-type", "application/json".to_owned()),
                ("cache-control", "no-store".to_owned()),
            ],
            body: issued.to_json(),
        };
        Ok((reply, issued.id))
    }
}
