//! A blocking client of the control socket, for `xvsctl`, the CNI plugin
//! and tests: one request line out, one response line back.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::protocol::{ErrorBody, Request, Response, MAX_LINE_BYTES};

/// Where xvsd listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/xvs/xvsd.sock";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{path}: {source}{}", if matches!(source.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) { " (is xvsd running?)" } else { "" })]
    Connect { path: String, source: io::Error },
    #[error("control socket: {0}")]
    Io(#[from] io::Error),
    #[error("xvsd closed the connection")]
    Closed,
    #[error("{0}")]
    Refused(ErrorBody),
}

/// A connection to xvsd's control socket.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl Client {
    /// Connects, with a 30 s bound on every read and write.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        Ok(Client {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            next_id: 1,
        })
    }

    /// Bounds every later read and write by `timeout` instead of 30 s
    /// (for a call that waits on purpose, as `capture` does).
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), ClientError> {
        self.writer.set_read_timeout(Some(timeout))?;
        self.writer.set_write_timeout(Some(timeout))?;
        Ok(())
    }

    /// Calls `method`; its result, or the error xvsd answered with.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        // A refused peer is answered and closed at once, maybe before the
        // request is written: a failed write still reads that answer.
        let written = self
            .writer
            .write_all(Request::new(id, method, params).to_line().as_bytes());
        let mut line = Vec::new();
        // Bounded like the server's lines (+1 for the newline).
        let limit = u64::try_from(MAX_LINE_BYTES + 1).unwrap_or(u64::MAX);
        let read = (&mut self.reader).take(limit).read_until(b'\n', &mut line);
        if line.pop() != Some(b'\n') {
            written?;
            read?;
            return Err(ClientError::Closed);
        }
        let response = Response::from_line(&line).map_err(ClientError::Refused)?;
        match (response.result, response.error) {
            (_, Some(error)) => Err(ClientError::Refused(error)),
            (Some(result), None) => Ok(result),
            (None, None) => Ok(Value::Null),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;

    /// A server that answers and closes without reading (as xvsd does to a
    /// refused peer): the client reports the answer, not the broken pipe
    /// of a request larger than the socket buffer.
    #[test]
    fn an_answer_before_the_request_is_read_is_reported() {
        let path = std::env::temp_dir().join(format!("xvs-client-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(
                b"{\"id\":0,\"error\":{\"code\":\"permission-denied\",\"message\":\"uid 7\"}}\n",
            )
            .unwrap();
        });
        let mut client = Client::connect(&path).unwrap();
        let big = Value::String("x".repeat(MAX_LINE_BYTES / 2));
        match client.call("show", big) {
            Err(ClientError::Refused(e)) => assert_eq!(e.code, ErrorCode::PermissionDenied),
            other => panic!("{other:?}"),
        }
        server.join().unwrap();
        std::fs::remove_file(&path).unwrap();
    }
}
