//! MCP responses that policy needs to read or rewrite (the answer to
//! `tools/list`), in either form a server may choose: `application/json`
//! or a `text/event-stream` whose events carry JSON-RPC messages (including
//! servers that send unframed JSON with an event-stream content type).
//!
//! Other responses are never buffered: the shim streams them through.

use std::fmt;

use serde_json::Value;

use crate::inspect::sse::{Event, SseError, SseParser};
use crate::inspect::tools::{ToolsError, ToolsListAnswer};

/// How a response body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    /// `application/json`: one JSON-RPC message.
    Json,
    /// `text/event-stream`: JSON-RPC messages in `data:` fields.
    EventStream,
}

impl ResponseFormat {
    /// The format named by a `Content-Type`, if pqguard understands it.
    pub fn of_content_type(content_type: &str) -> Option<Self> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/json") {
            Some(Self::Json)
        } else if media.eq_ignore_ascii_case("text/event-stream") {
            Some(Self::EventStream)
        } else {
            None
        }
    }
}

/// Why a response that policy needs cannot be understood. The engine fails
/// closed on these: the answer's body is replaced by a JSON-RPC internal
/// error for the request id (the status the server sent is kept, since the
/// head has gone on already): forwarding an answer it could not filter would
/// show tools the caller may not see.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseError {
    /// The event stream is malformed or an event is too large.
    Sse(SseError),
    /// The answer is not a usable `tools/list` answer.
    Tools(ToolsError),
    /// No message in the body answers the request id.
    NoAnswer,
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sse(e) => write!(f, "event stream: {e}"),
            Self::Tools(e) => write!(f, "{e}"),
            Self::NoAnswer => f.write_str("no message answers the request"),
        }
    }
}

impl std::error::Error for ResponseError {}

/// A complete `tools/list` response body, parsed, with the answer editable.
#[derive(Debug, Clone)]
pub struct ToolsListBody {
    format: ResponseFormat,
    /// Every event of an event stream, in order (empty for JSON).
    events: Vec<Event>,
    /// Index of the event carrying the answer.
    answer_event: usize,
    /// The answer itself.
    pub answer: ToolsListAnswer,
    /// When the answer came in a batch (a JSON array, 2025-03-26): the
    /// array and the answer's place in it.
    batch: Option<(Vec<Value>, usize)>,
}

impl ToolsListBody {
    /// Parses a complete body. `request_id` is the raw JSON text of the
    /// request's id; the answer is the message whose `id` equals it.
    /// `max_event_bytes` bounds the memory of one event.
    pub fn parse(
        format: ResponseFormat,
        body: &[u8],
        request_id: &str,
        max_event_bytes: usize,
    ) -> Result<Self, ResponseError> {
        let want: Value = serde_json::from_str(request_id).map_err(|_| ResponseError::NoAnswer)?;
        match format {
            ResponseFormat::Json => {
                let (answer, batch) = answer_for(body, &want)?.ok_or(ResponseError::NoAnswer)?;
                Ok(Self {
                    format,
                    events: Vec::new(),
                    answer_event: 0,
                    answer,
                    batch,
                })
            }
            ResponseFormat::EventStream => {
                let mut parser = SseParser::new(max_event_bytes);
                let mut events = parser.push(body).map_err(ResponseError::Sse)?;
                events.extend(parser.finish().map_err(ResponseError::Sse)?);
                let mut found = None;
                for (i, event) in events.iter().enumerate() {
                    if let Some(answer) = answer_for(&event.data, &want)? {
                        found = Some((i, answer));
                        break;
                    }
                }
                let (answer_event, (answer, batch)) = found.ok_or(ResponseError::NoAnswer)?;
                Ok(Self {
                    format,
                    events,
                    answer_event,
                    answer,
                    batch,
                })
            }
        }
    }

    /// The answer's message, or the batch holding it, as compact JSON.
    fn answer_bytes(&self) -> Vec<u8> {
        match &self.batch {
            None => self.answer.to_bytes(),
            Some((items, at)) => {
                let mut items = items.clone();
                if let Some(slot) = items.get_mut(*at) {
                    *slot = self.answer.message().clone();
                }
                serde_json::to_vec(&items).unwrap_or_default()
            }
        }
    }

    /// The body with the (possibly rewritten) answer, in the same format.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self.format {
            ResponseFormat::Json => self.answer_bytes(),
            ResponseFormat::EventStream => {
                let mut out = Vec::new();
                for (i, event) in self.events.iter().enumerate() {
                    if i == self.answer_event {
                        let rewritten = Event {
                            data: self.answer_bytes(),
                            ..event.clone()
                        };
                        rewritten.serialize_into(&mut out);
                    } else {
                        event.serialize_into(&mut out);
                    }
                }
                out
            }
        }
    }
}

/// An answer and, when it came in a batch, the batch and its place there.
type Found = (ToolsListAnswer, Option<(Vec<Value>, usize)>);

/// The `tools/list` answer in `data` if it is the response to `want`, alone
/// or as an element of a batch (a JSON array). Messages that are not JSON
/// objects with a matching id are skipped (notifications, progress); a
/// matching one must be a valid answer.
fn answer_for(data: &[u8], want: &Value) -> Result<Option<Found>, ResponseError> {
    let Ok(message) = serde_json::from_slice::<Value>(data) else {
        return Ok(None);
    };
    let answers = |m: &Value| m.get("id") == Some(want) && m.get("method").is_none();
    if let Value::Array(items) = message {
        let Some(at) = items.iter().position(answers) else {
            return Ok(None);
        };
        let element = serde_json::to_vec(&items[at]).map_err(|_| ResponseError::NoAnswer)?;
        let answer = ToolsListAnswer::parse(&element).map_err(ResponseError::Tools)?;
        return Ok(Some((answer, Some((items, at)))));
    }
    if !answers(&message) {
        return Ok(None);
    }
    ToolsListAnswer::parse(data)
        .map(|a| Some((a, None)))
        .map_err(ResponseError::Tools)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const ANSWER: &str = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object"}},{"name":"run_python","inputSchema":{"type":"object"}}]}}"#;

    #[test]
    fn reads_content_types() {
        assert_eq!(
            ResponseFormat::of_content_type("application/json; charset=utf-8"),
            Some(ResponseFormat::Json)
        );
        assert_eq!(
            ResponseFormat::of_content_type("Text/Event-Stream"),
            Some(ResponseFormat::EventStream)
        );
        assert_eq!(ResponseFormat::of_content_type("text/html"), None);
    }

    #[test]
    fn rewrites_a_json_answer() {
        let mut b =
            ToolsListBody::parse(ResponseFormat::Json, ANSWER.as_bytes(), "3", 1 << 20).unwrap();
        assert_eq!(b.answer.tools().len(), 2);
        b.answer.retain(|t| t.name == "echo");
        let v: Value = serde_json::from_slice(&b.to_bytes()).unwrap();
        assert_eq!(v["result"]["tools"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn finds_the_answer_among_other_events_and_keeps_them() {
        let stream = format!(
            ": comment\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{}}}}\n\nevent: message\nid: 9\ndata: {ANSWER}\n\n"
        );
        let mut b =
            ToolsListBody::parse(ResponseFormat::EventStream, stream.as_bytes(), "3", 1 << 20)
                .unwrap();
        b.answer.retain(|t| t.name != "run_python");
        let out = b.to_bytes();
        let mut p = SseParser::new(1 << 20);
        let events = p.push(&out).unwrap();
        assert_eq!(events.len(), 2);
        assert!(String::from_utf8_lossy(&events[0].data).contains("notifications/progress"));
        assert_eq!(events[1].id.as_deref(), Some("9"));
        let v: Value = serde_json::from_slice(&events[1].data).unwrap();
        assert_eq!(v["result"]["tools"][0]["name"], "echo");
        assert_eq!(v["result"]["tools"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn handles_unframed_json_sent_as_an_event_stream() {
        let b = ToolsListBody::parse(ResponseFormat::EventStream, ANSWER.as_bytes(), "3", 1 << 20)
            .unwrap();
        assert_eq!(b.answer.tools().len(), 2);
    }

    #[test]
    fn a_body_without_the_answer_is_an_error() {
        let other = ANSWER.replace("\"id\":3", "\"id\":4");
        assert_eq!(
            ToolsListBody::parse(ResponseFormat::Json, other.as_bytes(), "3", 1 << 20).unwrap_err(),
            ResponseError::NoAnswer
        );
        // A string id "3" is not the integer id 3.
        assert!(
            ToolsListBody::parse(ResponseFormat::Json, ANSWER.as_bytes(), "\"3\"", 1 << 20)
                .is_err()
        );
    }

    #[test]
    fn a_matching_but_malformed_answer_is_an_error() {
        let bad = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":"none"}}"#;
        assert!(matches!(
            ToolsListBody::parse(ResponseFormat::Json, bad.as_bytes(), "3", 1 << 20),
            Err(ResponseError::Tools(_))
        ));
    }
}
