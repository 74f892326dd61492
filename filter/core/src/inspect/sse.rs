//! Incremental `text/event-stream` parsing with bounded memory.
//!
//! MCP servers answer a request with `application/json` or with a
//! Server-Sent Events stream whose `data:` fields carry JSON-RPC messages.
//! [`SseParser`] follows the WHATWG event-stream rules: lines end with CRLF,
//! LF or CR; `data:` lines of one event are joined with `\n`; lines starting
//! with `:` are comments; `event:`, `id:` and `retry:` are kept; a blank line
//! dispatches the event. Some servers send plain JSON with an event-stream
//! content type: [`SseParser`] detects a body whose first non-blank byte is
//! `{` or `[` and reports it as one [`Event`] of that JSON.
//!
//! Memory: at most `max_event_bytes` of one pending line plus the event's
//! data are held; beyond that [`SseError::EventTooLarge`] is returned.

use std::fmt;

/// One dispatched event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field (`None` means the default type, `message`).
    pub event: Option<String>,
    /// The `id:` field.
    pub id: Option<String>,
    /// The `retry:` field, when it was a valid integer.
    pub retry: Option<u64>,
    /// The joined `data:` lines.
    pub data: Vec<u8>,
}

impl Event {
    /// Serialises the event back into event-stream form (LF line endings).
    /// Data containing newlines is split over several `data:` lines, so
    /// `parse(serialize(e)) == e`.
    pub fn serialize_into(&self, out: &mut Vec<u8>) {
        if let Some(event) = &self.event {
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(event.as_bytes());
            out.push(b'\n');
        }
        if let Some(id) = &self.id {
            out.extend_from_slice(b"id: ");
            out.extend_from_slice(id.as_bytes());
            out.push(b'\n');
        }
        if let Some(retry) = self.retry {
            out.extend_from_slice(format!("retry: {retry}\n").as_bytes());
        }
        for line in self.data.split(|&b| b == b'\n') {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out.push(b'\n');
    }
}

/// Why a stream cannot be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SseError {
    /// One event (or one line) exceeds the memory bound.
    EventTooLarge {
        /// The configured bound.
        limit: usize,
    },
    /// Event-stream text must be UTF-8.
    InvalidUtf8,
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EventTooLarge { limit } => write!(f, "event larger than {limit} bytes"),
            Self::InvalidUtf8 => f.write_str("event stream is not UTF-8"),
        }
    }
}

impl std::error::Error for SseError {}

/// How the stream turned out to be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Nothing but blank bytes seen yet.
    Unknown,
    /// A real event stream.
    Events,
    /// Plain JSON sent with an event-stream content type.
    UnframedJson,
}

/// Incremental parser; feed it chunks with [`SseParser::push`].
#[derive(Debug, Clone)]
pub struct SseParser {
    max_event_bytes: usize,
    framing: Framing,
    /// Bytes of the current, unfinished line (or the whole unframed body).
    line: Vec<u8>,
    /// A CR ended the last line; a following LF belongs to it.
    after_cr: bool,
    pending: Event,
    has_data: bool,
}

impl SseParser {
    /// A parser that holds at most `max_event_bytes` for one event.
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes,
            framing: Framing::Unknown,
            line: Vec::new(),
            after_cr: false,
            pending: Event::default(),
            has_data: false,
        }
    }

    fn held(&self) -> usize {
        self.line.len() + self.pending.data.len()
    }

    /// Feeds a chunk; returns the events it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, SseError> {
        let mut events = Vec::new();
        let mut rest = chunk;
        if self.framing == Framing::Unknown {
            let skip = rest
                .iter()
                .position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                .unwrap_or(rest.len());
            rest = rest.get(skip..).unwrap_or(&[]);
            match rest.first() {
                None => return Ok(events),
                Some(b'{' | b'[') => self.framing = Framing::UnframedJson,
                Some(_) => self.framing = Framing::Events,
            }
        }
        if self.framing == Framing::UnframedJson {
            if self.line.len() + rest.len() > self.max_event_bytes {
                return Err(SseError::EventTooLarge {
                    limit: self.max_event_bytes,
                });
            }
            self.line.extend_from_slice(rest);
            return Ok(events);
        }
        for &b in rest {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.line_done(&line)? {
                        events.push(event);
                    }
                    // Reuse the allocation.
                    self.line = line;
                    self.line.clear();
                }
                _ => {
                    if self.held() >= self.max_event_bytes {
                        return Err(SseError::EventTooLarge {
                            limit: self.max_event_bytes,
                        });
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(events)
    }

    /// Ends the stream; returns a last event for unframed JSON. An event
    /// without its terminating blank line is discarded, as browsers do.
    pub fn finish(&mut self) -> Result<Option<Event>, SseError> {
        if self.framing == Framing::UnframedJson {
            let data = std::mem::take(&mut self.line);
            std::str::from_utf8(&data).map_err(|_| SseError::InvalidUtf8)?;
            return Ok(Some(Event {
                data,
                ..Event::default()
            }));
        }
        Ok(None)
    }

    fn line_done(&mut self, line: &[u8]) -> Result<Option<Event>, SseError> {
        if line.is_empty() {
            if !self.has_data {
                // Fields without data are reset, per the event-stream rules.
                self.pending.event = None;
                return Ok(None);
            }
            self.has_data = false;
            let mut event = std::mem::take(&mut self.pending);
            // The id and retry persist as stream state in browsers; for
            // inspection each event reports the fields it carried.
            std::str::from_utf8(&event.data).map_err(|_| SseError::InvalidUtf8)?;
            event.data.shrink_to_fit();
            return Ok(Some(event));
        }
        if line.first() == Some(&b':') {
            return Ok(None);
        }
        let text = std::str::from_utf8(line).map_err(|_| SseError::InvalidUtf8)?;
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (text, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.pending.data.push(b'\n');
                }
                self.pending.data.extend_from_slice(value.as_bytes());
                self.has_data = true;
            }
            "event" => self.pending.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.pending.id = Some(value.to_owned()),
            "retry" => self.pending.retry = value.parse().ok(),
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn all(stream: &[u8], chunk: usize) -> Vec<Event> {
        let mut p = SseParser::new(1 << 20);
        let mut out = Vec::new();
        for c in stream.chunks(chunk.max(1)) {
            out.extend(p.push(c).unwrap());
        }
        out.extend(p.finish().unwrap());
        out
    }

    #[test]
    fn parses_events_with_multiline_data_comments_and_fields_in_any_chunking() {
        let stream = b": keep-alive\r\nevent: message\r\nid: 7\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata:x\rdata: y\r\r\n\n";
        for chunk in [1, 2, 3, 7, 1000] {
            let ev = all(stream, chunk);
            assert_eq!(ev.len(), 2, "chunk {chunk}");
            assert_eq!(ev[0].event.as_deref(), Some("message"));
            assert_eq!(ev[0].id.as_deref(), Some("7"));
            assert_eq!(ev[0].data, b"{\"a\":\n1}");
            assert_eq!(ev[1].data, b"x\ny");
        }
    }

    #[test]
    fn reports_unframed_json_as_one_event() {
        let ev = all(b"\n {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}", 4);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].data, b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}");
    }

    #[test]
    fn bounds_memory_per_event() {
        let mut p = SseParser::new(16);
        let big = [b"data: ".as_slice(), &[b'x'; 32]].concat();
        assert_eq!(
            p.push(&big).unwrap_err(),
            SseError::EventTooLarge { limit: 16 }
        );
        let mut p = SseParser::new(16);
        let lines = b"data: 0123456789\ndata: 0123456789\n";
        assert!(p.push(lines).is_err());
    }

    #[test]
    fn serialization_round_trips() {
        let e = Event {
            event: Some("message".into()),
            id: Some("3".into()),
            retry: Some(100),
            data: b"line1\nline2".to_vec(),
        };
        let mut out = Vec::new();
        e.serialize_into(&mut out);
        assert_eq!(all(&out, 5), vec![e]);
    }

    #[test]
    fn an_event_without_blank_line_is_not_dispatched() {
        assert!(all(b"data: partial", 3).is_empty());
    }
}
