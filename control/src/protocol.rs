//! The control protocol's wire format: newline-delimited JSON over a Unix
//! socket, one request line answered by one response line.
//!
//! ```text
//! → {"version":1,"id":7,"method":"route-add","params":{"prefix":"10.0.0.0/8","port":"eth0"}}
//! ← {"id":7,"result":{...}}
//! ← {"id":7,"error":{"code":"invalid-params","message":"params.prefix: ..."}}
//! ```
//!
//! The envelope is decoded in two steps: first the line (size, UTF-8 JSON,
//! an object with `version`, `id`, `method`, `params`), then the method's
//! own parameters by the handler that knows them. So a person reading an
//! error learns which of the two was wrong: the line (`parse-error`,
//! `too-large`), the protocol (`unsupported-version`), the method
//! (`unknown-method`) or its parameters (`invalid-params`). Nothing here
//! panics on any input; every refusal is an [`ErrorBody`] with a stable
//! code and a message that names the offending field.
//!
//! Lines are bounded ([`MAX_LINE_BYTES`]): [`LineBuffer`] frames a byte
//! stream into lines and drops a line that grows past the bound (reporting
//! it once), so a peer that never sends a newline costs bounded memory.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this build speaks. A request with another version
/// is refused with `unsupported-version`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest request or response line, newline excluded.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// A request: which method, with what parameters, under which id (echoed
/// in the response so a client may pipeline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub version: u32,
    pub id: u64,
    pub method: String,
    #[serde(default)]
    pub params: Value,
}

impl Request {
    pub fn new(id: u64, method: &str, params: Value) -> Request {
        Request {
            version: PROTOCOL_VERSION,
            id,
            method: method.to_string(),
            params,
        }
    }

    /// The request as one line, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("a request always serializes");
        line.push('\n');
        line
    }

    /// The method's parameters as `T`; an `invalid-params` error naming
    /// the field otherwise.
    pub fn params<T: serde::de::DeserializeOwned>(&self) -> Result<T, ErrorBody> {
        serde_json::from_value(self.params.clone()).map_err(|e| {
            ErrorBody::new(
                ErrorCode::InvalidParams,
                format!("{}: params: {e}", self.method),
            )
        })
    }
}

/// Why a request was refused. Stable names on the wire (kebab-case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// Not JSON, not UTF-8, or not a request object.
    ParseError,
    /// The line was longer than [`MAX_LINE_BYTES`].
    TooLarge,
    UnsupportedVersion,
    UnknownMethod,
    InvalidParams,
    /// The peer may not use the socket (credentials).
    PermissionDenied,
    /// What the request names does not exist.
    NotFound,
    /// The request contradicts the current state.
    Conflict,
    /// The switch failed doing something it should have managed.
    Internal,
}

/// An error response's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = serde_json::to_value(self.code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        write!(f, "{code}: {}", self.message)
    }
}

/// A response: the request's id (0 when the request could not be read far
/// enough to know it) and either a result or an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Response {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Response {
    pub fn ok(id: u64, result: Value) -> Response {
        Response {
            id,
            result: Some(result),
            error: None,
        }
    }

    pub fn err(id: u64, error: ErrorBody) -> Response {
        Response {
            id,
            result: None,
            error: Some(error),
        }
    }

    /// The response as one line, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("a response always serializes");
        line.push('\n');
        line
    }

    /// Reads a response line (a client's side).
    pub fn from_line(line: &[u8]) -> Result<Response, ErrorBody> {
        serde_json::from_slice(line)
            .map_err(|e| ErrorBody::new(ErrorCode::ParseError, format!("response: {e}")))
    }
}

/// Reads a request line (without its newline). On error, the response to
/// send: with the request's id when the line got that far.
pub fn decode_request(line: &[u8]) -> Result<Request, Response> {
    if line.len() > MAX_LINE_BYTES {
        return Err(Response::err(0, too_large()));
    }
    let parse = |m: String| Response::err(0, ErrorBody::new(ErrorCode::ParseError, m));
    let text = std::str::from_utf8(line).map_err(|e| parse(format!("not UTF-8: {e}")))?;
    let value: Value = serde_json::from_str(text).map_err(|e| parse(format!("not JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(parse("a request is a JSON object".into()));
    };
    let id = object.get("id").and_then(Value::as_u64).unwrap_or(0);
    // The version first: a request from a newer client may carry fields
    // this build refuses, and the version is what it needs to hear about.
    match object.get("version").and_then(Value::as_u64) {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(v) => {
            return Err(Response::err(
                id,
                ErrorBody::new(
                    ErrorCode::UnsupportedVersion,
                    format!("protocol version {v}; this xvsd speaks {PROTOCOL_VERSION}"),
                ),
            ))
        }
        None => {
            return Err(Response::err(
                id,
                ErrorBody::new(
                    ErrorCode::ParseError,
                    format!(
                        "\"version\" missing or not a number (this xvsd speaks {PROTOCOL_VERSION})"
                    ),
                ),
            ))
        }
    }
    serde_json::from_value(value).map_err(|e| {
        Response::err(
            id,
            ErrorBody::new(ErrorCode::ParseError, format!("request: {e}")),
        )
    })
}

fn too_large() -> ErrorBody {
    ErrorBody::new(
        ErrorCode::TooLarge,
        format!("a line is at most {MAX_LINE_BYTES} bytes"),
    )
}

/// What [`LineBuffer::next_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, newline removed.
    Line(Vec<u8>),
    /// A line longer than [`MAX_LINE_BYTES`] was dropped (reported once,
    /// when its end arrives or when it first crosses the bound).
    TooLarge,
    /// No complete line yet.
    NeedMore,
}

/// Frames a byte stream into lines of at most [`MAX_LINE_BYTES`], holding
/// at most that much (plus one read) in memory.
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Inside an oversized line: discard until its newline.
    discarding: bool,
}

impl LineBuffer {
    pub fn new() -> LineBuffer {
        LineBuffer::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next frame; call until [`Frame::NeedMore`].
    pub fn next_line(&mut self) -> Frame {
        match self.buf.iter().position(|&b| b == b'\n') {
            Some(end) => {
                let line: Vec<u8> = self.buf.drain(..=end).take(end).collect();
                if std::mem::take(&mut self.discarding) {
                    // The tail of a line already reported.
                    return self.next_line();
                }
                if line.len() > MAX_LINE_BYTES {
                    return Frame::TooLarge;
                }
                Frame::Line(line)
            }
            None if self.buf.len() > MAX_LINE_BYTES => {
                self.buf.clear();
                if std::mem::replace(&mut self.discarding, true) {
                    Frame::NeedMore
                } else {
                    Frame::TooLarge
                }
            }
            None => Frame::NeedMore,
        }
    }

    /// Bytes of a line not yet complete (what a closed stream left over).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// The response to a line [`LineBuffer`] dropped for its size.
pub fn too_large_response() -> Response {
    Response::err(0, too_large())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn code(line: &[u8]) -> (u64, ErrorCode) {
        let r = decode_request(line).unwrap_err();
        (r.id, r.error.unwrap().code)
    }

    #[test]
    fn a_request_round_trips() {
        let req = Request::new(7, "route-add", json!({"prefix": "10.0.0.0/8"}));
        let line = req.to_line();
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        assert_eq!(decode_request(line.trim_end().as_bytes()).unwrap(), req);
        let ok = Response::ok(7, json!({"added": true}));
        assert_eq!(Response::from_line(ok.to_line().as_bytes()).unwrap(), ok);
        let err = Response::err(7, ErrorBody::new(ErrorCode::NotFound, "no port x"));
        let line = err.to_line();
        assert_eq!(
            line,
            "{\"id\":7,\"error\":{\"code\":\"not-found\",\"message\":\"no port x\"}}\n"
        );
        assert_eq!(Response::from_line(line.as_bytes()).unwrap(), err);
    }

    #[test]
    fn params_default_to_null_and_are_typed_by_the_handler() {
        let req = decode_request(br#"{"version":1,"id":3,"method":"show"}"#).unwrap();
        assert_eq!(req.params, Value::Null);
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Route {
            prefix: String,
        }
        let req = Request::new(4, "route-add", json!({"prefix": 10}));
        let e = req.params::<Route>().unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParams);
        assert!(
            e.message.contains("route-add") && e.message.contains("string"),
            "{e}"
        );
    }

    #[test]
    fn malformed_lines_get_clear_errors() {
        assert_eq!(code(b"garbage"), (0, ErrorCode::ParseError));
        assert_eq!(code(&[0xff, 0xfe]), (0, ErrorCode::ParseError));
        assert_eq!(code(b"[1,2]"), (0, ErrorCode::ParseError));
        assert_eq!(
            code(br#"{"version":1,"id":5,"method":"show""#),
            (0, ErrorCode::ParseError)
        );
        assert_eq!(
            code(br#"{"id":5,"method":"show"}"#),
            (5, ErrorCode::ParseError)
        );
        assert_eq!(
            code(br#"{"version":2,"id":5,"method":"x"}"#),
            (5, ErrorCode::UnsupportedVersion)
        );
        assert_eq!(
            code(br#"{"version":1,"id":5,"method":7}"#),
            (5, ErrorCode::ParseError)
        );
        assert_eq!(
            code(br#"{"version":1,"id":5,"method":"show","extra":1}"#),
            (5, ErrorCode::ParseError)
        );
        let big = vec![b' '; MAX_LINE_BYTES + 1];
        assert_eq!(code(&big), (0, ErrorCode::TooLarge));
        let msg = decode_request(br#"{"version":9,"id":1,"method":"x"}"#)
            .unwrap_err()
            .error
            .unwrap()
            .to_string();
        assert_eq!(
            msg,
            "unsupported-version: protocol version 9; this xvsd speaks 1"
        );
    }

    #[test]
    fn lines_are_framed_across_reads() {
        let mut b = LineBuffer::new();
        b.push(b"{\"a\"");
        assert_eq!(b.next_line(), Frame::NeedMore);
        b.push(b":1}\n{}\n{");
        assert_eq!(b.next_line(), Frame::Line(b"{\"a\":1}".to_vec()));
        assert_eq!(b.next_line(), Frame::Line(b"{}".to_vec()));
        assert_eq!(b.next_line(), Frame::NeedMore);
        assert_eq!(b.pending(), 1);
    }

    #[test]
    fn an_oversized_line_is_reported_once_and_the_next_one_read() {
        let mut b = LineBuffer::new();
        let chunk = vec![b'x'; MAX_LINE_BYTES / 2 + 1];
        b.push(&chunk);
        assert_eq!(b.next_line(), Frame::NeedMore);
        b.push(&chunk);
        assert_eq!(b.next_line(), Frame::TooLarge);
        assert!(b.pending() == 0, "the buffer is bounded");
        b.push(&chunk);
        assert_eq!(b.next_line(), Frame::NeedMore);
        b.push(b"tail\n{\"ok\":1}\n");
        assert_eq!(b.next_line(), Frame::Line(b"{\"ok\":1}".to_vec()));
        // Oversized but complete in one read.
        let mut big = vec![b'y'; MAX_LINE_BYTES + 1];
        big.push(b'\n');
        b.push(&big);
        assert_eq!(b.next_line(), Frame::TooLarge);
        assert_eq!(b.next_line(), Frame::NeedMore);
        assert_eq!(
            too_large_response().error.unwrap().code,
            ErrorCode::TooLarge
        );
    }

    proptest! {
        /// Any bytes: decoding answers (never panics), and framing returns
        /// exactly the newline-separated pieces, however the stream is cut.
        #[test]
        fn any_input_is_answered(bytes in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..300) {
            let _ = decode_request(&bytes);
            let mut b = LineBuffer::new();
            let cut = cut.min(bytes.len());
            b.push(&bytes[..cut]);
            let mut lines = Vec::new();
            loop {
                match b.next_line() {
                    Frame::Line(l) => lines.push(l),
                    Frame::NeedMore => break,
                    Frame::TooLarge => unreachable!("short input"),
                }
            }
            b.push(&bytes[cut..]);
            while let Frame::Line(l) = b.next_line() {
                lines.push(l);
            }
            let expected: Vec<Vec<u8>> = bytes.split(|&c| c == b'\n').map(<[u8]>::to_vec).collect();
            let complete = expected.len() - 1;
            prop_assert_eq!(&lines[..], &expected[..complete]);
            prop_assert_eq!(b.pending(), expected[complete].len());
        }
    }
}
