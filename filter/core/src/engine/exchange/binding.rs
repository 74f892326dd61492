//! ML-KEM bound sessions in the request path (see [`crate::bind`]): the
//! bind endpoint, and the proof a bound request carries.

use serde_json::Value;

use super::*;
use crate::bind::{self, BindError, BoundHeaders, Covered, Proof, BIND_PATH};
use crate::ticket::{self, TicketContents, TicketError};
use crate::token::{base64url_decode, Algorithm, VerifiedToken};

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
                let proof = Proof::parse(value).map_err(|e| rejection(&e))?;
                if let Some(ticket) = &self.ticket {
                    if ticket.binding_id != proof.id {
                        return Err(rejection(&BindError::Ticket(
                            "the proof is for another binding than the ticket",
                            false,
                        )));
                    }
                }
                self.proof = Some(proof);
            }
            None if self.ticket.is_some() => {
                return Err(rejection(&BindError::Ticket(
                    "a ticket is accepted only with a proof of its binding",
                    false,
                )));
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
        // With a ticket the MAC covers the ticket, and the key still comes
        // from the token the binding was made for.
        let carried = self.ticket.as_ref().map_or(token.digest, |t| t.digest);
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
                token_digest: &carried,
            };
            match &self.ticket {
                Some(t) => proof.verify_with_key(&t.key, &covered, now, settings.window_seconds),
                None => proof.verify(
                    &settings.secrets,
                    &covered,
                    &token.digest,
                    now,
                    settings.window_seconds,
                ),
            }
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

    /// Authenticates with a session ticket instead of a token (see
    /// [`crate::ticket`]): opened once per worker and cached by its digest;
    /// accepted only while its expiry holds, its issuer, audience and
    /// algorithm are still allowed, and the key that verified the token is
    /// still in the key set. Its proof is checked with the body.
    pub(super) fn authenticate_ticket(
        &mut self,
        w: &mut Worker,
        store: &dyn SharedStore,
        out: &mut Effects,
    ) -> Result<(), Rejection> {
        let Some(text) = self.head.ticket.clone() else {
            return Ok(());
        };
        if self.head.authorization.is_some() {
            return Err(rejection(&BindError::Ticket(
                "send the token or a ticket, not both",
                false,
            )));
        }
        let no_tickets = w
            .config()
            .binding
            .as_ref()
            .is_none_or(|b| b.ticket_secrets.is_empty());
        if no_tickets {
            return Err(rejection(&BindError::Ticket(
                "tickets are not accepted here",
                false,
            )));
        }
        if w.keys().is_none() {
            w.adopt_shared_keys(store, out);
        }
        let Some(keys) = w.keys().cloned() else {
            let mut r = Rejection::new(Reason::Unauthorized, "no key set available yet");
            r.code = Some("no_keys");
            return Err(r);
        };
        let now = self.started_ms / 1000;
        let cached = w
            .tickets
            .get(text.as_str())
            .filter(|t| t.key_set == *keys.id())
            .cloned();
        let opened = match cached {
            Some(hit) => {
                out.count("pqguard.ticket_cache.hit", 1);
                hit
            }
            None => {
                out.count("pqguard.ticket_cache.miss", 1);
                let opened = Self::open_ticket(w, &keys, &text, now)?;
                let capacity = w.config().auth.as_ref().map_or(1, |a| a.cache_capacity);
                if w.tickets.len() >= capacity {
                    w.tickets.clear();
                }
                w.tickets.insert(text, opened.clone());
                opened
            }
        };
        let token = opened.token.clone();
        if now > token.claims.exp {
            return Err(rejection(&BindError::Ticket("expired", true)));
        }
        out.count(
            format!("pqguard.token_alg.{}", metric_part(token.alg.name())),
            1,
        );
        self.token = Some(token);
        self.ticket = Some(opened);
        Ok(())
    }

    /// Opens and checks a ticket (a cache miss).
    fn open_ticket(
        w: &Worker,
        keys: &crate::token::KeySet,
        text: &str,
        now: u64,
    ) -> Result<crate::engine::worker::OpenedTicket, Rejection> {
        let settings =
            w.config().binding.as_ref().ok_or_else(|| {
                rejection(&BindError::Ticket("tickets are not accepted here", false))
            })?;
        let contents = ticket::open(&settings.ticket_secrets, text).map_err(|e| {
            rejection(&match e {
                TicketError::UnknownSecret => {
                    BindError::Ticket("sealed under a retired ticket secret", true)
                }
                TicketError::BadTag => BindError::Ticket("altered, or not made here", false),
                TicketError::Malformed(why) => BindError::Ticket(why, false),
            })
        })?;
        let options = w
            .config()
            .auth
            .as_ref()
            .map(|a| a.options.clone())
            .unwrap_or_default();
        let alg = Algorithm::from_name(&contents.alg)
            .filter(|a| options.algorithms.contains(*a))
            .ok_or_else(|| {
                rejection(&BindError::Ticket(
                    "its algorithm is no longer allowed",
                    true,
                ))
            })?;
        let key_present = keys.keys().iter().any(|k| {
            k.alg() == alg
                && k.kid() == contents.kid.as_deref()
                && k.thumbprint() == contents.key_thumbprint
        });
        if !key_present {
            return Err(rejection(&BindError::Ticket(
                "the key that verified its token left the key set",
                true,
            )));
        }
        // The claims again, under today's issuers, audience and clock.
        let payload = Value::Object(contents.claims.clone()).to_string();
        let mut claims =
            crate::token::validate_claims(payload.as_bytes(), &options, now).map_err(|e| {
                let mut r = rejection(&BindError::Ticket(
                    "its claims are no longer accepted",
                    true,
                ));
                r.detail = format!("binding: session ticket: {e}");
                r
            })?;
        claims.exp = claims.exp.min(contents.exp);
        let (binding_kid, _) = Proof::id_parts(&contents.binding_id).map_err(|e| rejection(&e))?;
        let binding_secret = settings
            .secrets
            .iter()
            .find(|s| s.kid == binding_kid)
            .ok_or_else(|| rejection(&BindError::UnknownSecret))?;
        let key = zeroize::Zeroizing::new(bind::binding_key(
            binding_secret,
            &contents.binding_id,
            &contents.token_digest,
        ));
        let token = VerifiedToken {
            alg,
            kid: contents.kid.clone(),
            claims,
            digest: contents.token_digest,
        };
        Ok(crate::engine::worker::OpenedTicket {
            token: Arc::new(token),
            key_set: *keys.id(),
            digest: bind::sha3(text.as_bytes()),
            binding_id: contents.binding_id,
            key,
        })
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
        let mut body = issued.to_json();
        if let Some(sealed) = self.issue_ticket(w, &token, &issued) {
            let mut doc: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if let Some(o) = doc.as_object_mut() {
                o.insert("ticket".into(), Value::from(sealed));
                body = doc.to_string();
            }
        }
        let reply = LocalReply {
            status: 200,
            headers: vec![
                ("content-type", "application/json".to_owned()),
                ("cache-control", "no-store".to_owned()),
            ],
            body,
        };
        Ok((reply, issued.id))
    }

    /// The session ticket of a new binding, when ticket secrets are
    /// configured: sealed under the first one, expiring with the binding.
    fn issue_ticket(
        &self,
        w: &mut Worker,
        token: &VerifiedToken,
        issued: &bind::Issued,
    ) -> Option<String> {
        let secret = w.config().binding.as_ref()?.ticket_secrets.first()?.clone();
        let key_thumbprint = w
            .keys()?
            .keys()
            .iter()
            .find(|k| k.alg() == token.alg && k.kid() == token.kid.as_deref())?
            .thumbprint();
        let mut nonce = [0u8; ticket::NONCE_LEN];
        if !w.more_random(&mut nonce) {
            return None;
        }
        let contents = TicketContents {
            binding_id: issued.id.clone(),
            token_digest: token.digest,
            alg: token.alg.name().to_owned(),
            kid: token.kid.clone(),
            key_thumbprint,
            exp: issued.expires_at,
            claims: token.claims.all.clone(),
        };
        Some(ticket::seal(&secret, &nonce, &contents))
    }
}
