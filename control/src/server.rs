//! The control socket's server loop, generic over what answers requests.
//!
//! xvsd runs it on a tokio runtime of its own, off the datapath cores: a
//! worker never waits on the control plane (handlers publish new state
//! with an atomic swap the workers pick up between batches). Each
//! connection is read line by line ([`LineBuffer`], so bounded memory per
//! connection), each request answered in order on the same connection.
//!
//! Who may connect: the socket file is created mode 0600 (root only; mode
//! 0666 when other uids are allowed, which then only the check below keeps
//! out), and every connection's peer credentials (`SO_PEERCRED`) are
//! checked against the allowed uids (root always) before any request is
//! read; a refused peer gets one `permission-denied` response and is
//! closed. Connections
//! beyond [`MAX_CONNECTIONS`] wait for a slot.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use crate::protocol::{
    decode_request, too_large_response, ErrorBody, ErrorCode, Frame, LineBuffer, Request, Response,
};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub pid: Option<i32>,
}

/// Answers requests. `handle` runs on the runtime's blocking pool, one
/// request of a connection at a time, so it may wait (for the workers to
/// take a new configuration, for a capture to fill) without stalling
/// other connections; a worker never waits for it.
pub trait Handler: Send + Sync + 'static {
    /// The result of `request`, or why not. Unknown methods answer
    /// `unknown-method`.
    fn handle(&self, request: &Request, peer: &Peer) -> Result<Value, ErrorBody>;
}

/// A bound control socket.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    allowed_uids: Vec<u32>,
}

impl Server {
    /// Binds `path` (mode 0600), replacing a stale socket file that no one
    /// listens on; refuses when another server is listening there or the
    /// path is not a socket. `allowed_uids` may connect besides root.
    pub async fn bind(path: &Path, allowed_uids: Vec<u32>) -> io::Result<Server> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                if UnixStream::connect(path).await.is_ok() {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("{}: another xvsd is listening", path.display()),
                    ));
                }
                std::fs::remove_file(path)?;
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{}: exists and is not a socket", path.display()),
                ))
            }
            Err(_) => {}
        }
        let listener = UnixListener::bind(path)?;
        let mode = if allowed_uids.is_empty() {
            0o600
        } else {
            0o666
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        Ok(Server {
            listener,
            path: path.to_path_buf(),
            allowed_uids,
        })
    }

    /// Serves connections until the task is dropped or aborted.
    pub async fn serve<H: Handler>(self, handler: Arc<H>) -> io::Result<()> {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let allowed = Arc::new(self.allowed_uids.clone());
        loop {
            let permit = slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| io::Error::other("connection slots closed"))?;
            let (stream, _) = self.listener.accept().await?;
            let handler = handler.clone();
            let allowed = allowed.clone();
            tokio::spawn(async move {
                // A connection's I/O error ends that connection only.
                let _ = connection(stream, &allowed, handler).await;
                drop(permit);
            });
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Root, or one of `allowed`.
pub fn authorized(uid: u32, allowed: &[u32]) -> bool {
    uid == 0 || allowed.contains(&uid)
}

async fn connection<H: Handler>(
    mut stream: UnixStream,
    allowed: &[u32],
    handler: Arc<H>,
) -> io::Result<()> {
    let cred = stream.peer_cred()?;
    let peer = Peer {
        uid: cred.uid(),
        pid: cred.pid(),
    };
    if !authorized(peer.uid, allowed) {
        let refusal = Response::err(
            0,
            ErrorBody::new(
                ErrorCode::PermissionDenied,
                format!(
                    "uid {} may not use the xvsd control socket (root only, unless allowed)",
                    peer.uid
                ),
            ),
        );
        stream.write_all(refusal.to_line().as_bytes()).await?;
        return Ok(());
    }
    let mut lines = LineBuffer::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        lines.push(&buf[..n]);
        loop {
            let response = match lines.next_line() {
                Frame::NeedMore => break,
                Frame::TooLarge => too_large_response(),
                Frame::Line(line) => {
                    let handler = handler.clone();
                    tokio::task::spawn_blocking(move || answer(&line, &peer, &*handler))
                        .await
                        .unwrap_or_else(|_| handler_panicked())
                }
            };
            stream.write_all(response.to_line().as_bytes()).await?;
        }
    }
}

/// What a request whose handler panicked gets (a bug, but the connection
/// and the daemon carry on).
fn handler_panicked() -> Response {
    Response::err(
        0,
        ErrorBody::new(
            ErrorCode::Internal,
            "the request's handler failed; see xvsd's log",
        ),
    )
}

/// The response to one request line.
pub fn answer<H: Handler>(line: &[u8], peer: &Peer, handler: &H) -> Response {
    match decode_request(line) {
        Err(refusal) => refusal,
        Ok(request) => match handler.handle(&request, peer) {
            Ok(result) => Response::ok(request.id, result),
            Err(error) => Response::err(request.id, error),
        },
    }
}

/// `unknown-method` for `request`, for handlers' fallback arm.
pub fn unknown_method(request: &Request) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::UnknownMethod,
        format!("no method {:?}", request.method),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Client;
    use serde_json::json;

    /// Echoes `params` for "echo", counts for "count", fails for "fail".
    struct Echo(std::sync::atomic::AtomicU64);

    impl Handler for Echo {
        fn handle(&self, request: &Request, peer: &Peer) -> Result<Value, ErrorBody> {
            match request.method.as_str() {
                "echo" => Ok(json!({"params": request.params, "uid": peer.uid})),
                "count" => Ok(json!(
                    self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
                )),
                "fail" => Err(ErrorBody::new(ErrorCode::NotFound, "nothing here")),
                _ => Err(unknown_method(request)),
            }
        }
    }

    fn socket_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("xvs-ctl-{}-{name}.sock", std::process::id()))
    }

    async fn start(name: &str) -> PathBuf {
        let path = socket_path(name);
        let server = Server::bind(&path, vec![]).await.unwrap();
        tokio::spawn(server.serve(Arc::new(Echo(0.into()))));
        path
    }

    /// Sends raw bytes, returns the responses to the first `n` lines.
    async fn raw(path: &Path, bytes: &[u8], n: usize) -> Vec<Response> {
        let mut s = UnixStream::connect(path).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let mut out = Vec::new();
        let mut lines = LineBuffer::new();
        let mut buf = vec![0u8; 4096];
        while out.len() < n {
            let k = s.read(&mut buf).await.unwrap();
            assert!(k > 0, "closed after {} responses", out.len());
            lines.push(&buf[..k]);
            while let Frame::Line(l) = lines.next_line() {
                out.push(Response::from_line(&l).unwrap());
            }
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_are_answered_in_order_and_bad_lines_do_not_end_the_connection() {
        let path = start("order").await;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut input = Request::new(1, "echo", json!({"a": 1})).to_line();
        input.push_str("not json\n");
        input.push_str(&Request::new(2, "nope", Value::Null).to_line());
        input.push_str("{\"version\":1,\"id\":3,\"method\":\"echo\",\"params\":{}");
        input.push('\n');
        input.push_str(&Request::new(4, "fail", Value::Null).to_line());
        input.push_str(&Request::new(5, "count", Value::Null).to_line());
        let r = raw(&path, input.as_bytes(), 6).await;
        let uid = r[0].result.as_ref().unwrap()["uid"].as_u64().unwrap();
        assert_eq!(r[0].result.as_ref().unwrap()["params"], json!({"a": 1}));
        assert_eq!(r[0].id, 1);
        let codes: Vec<Option<ErrorCode>> =
            r.iter().map(|x| x.error.as_ref().map(|e| e.code)).collect();
        assert_eq!(
            codes,
            [
                None,
                Some(ErrorCode::ParseError),
                Some(ErrorCode::UnknownMethod),
                Some(ErrorCode::ParseError),
                Some(ErrorCode::NotFound),
                None
            ]
        );
        assert_eq!(r[2].id, 2);
        assert_eq!(r[5].result, Some(json!(1)));
        // The blocking client, from another thread.
        let p = path.clone();
        let got = tokio::task::spawn_blocking(move || {
            let mut c = Client::connect(&p).unwrap();
            (c.call("count", Value::Null), c.call("fail", Value::Null))
        })
        .await
        .unwrap();
        assert_eq!(got.0.unwrap(), json!(2));
        let e = got.1.unwrap_err().to_string();
        assert_eq!(e, "not-found: nothing here");
        // The peer credentials are the test process's own.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let own: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap();
        assert_eq!(uid, own);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_oversized_line_is_refused_and_the_next_request_served() {
        let path = start("big").await;
        let mut input = vec![b'x'; crate::protocol::MAX_LINE_BYTES + 10];
        input.push(b'\n');
        input.extend_from_slice(Request::new(9, "count", Value::Null).to_line().as_bytes());
        let r = raw(&path, &input, 2).await;
        assert_eq!(r[0].error.as_ref().unwrap().code, ErrorCode::TooLarge);
        assert_eq!((r[1].id, r[1].result.clone()), (9, Some(json!(1))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_server_on_a_live_socket_is_refused_and_a_stale_one_replaced() {
        let path = start("live").await;
        let e = Server::bind(&path, vec![]).await.err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        // A socket file nobody listens on: replaced.
        let stale = socket_path("stale");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        assert!(stale.exists());
        let s = Server::bind(&stale, vec![]).await.unwrap();
        drop(s);
        assert!(!stale.exists(), "removed when the server goes");
        // Not a socket: refused, left alone.
        let file = socket_path("file");
        std::fs::write(&file, b"x").unwrap();
        let e = Server::bind(&file, vec![]).await.err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn root_and_allowed_uids_only() {
        assert!(authorized(0, &[]));
        assert!(!authorized(1000, &[]));
        assert!(authorized(1000, &[1000]));
        assert!(!authorized(1001, &[1000]));
    }
}
