//! xvsd's Prometheus endpoint: the live [`Report`] as OpenMetrics text, and
//! the small HTTP server that hands it to a scraper on localhost.
//!
//! # Rendering
//!
//! [`render`] turns a report (plus the snapshot generation and the flow
//! table's fill) into one OpenMetrics exposition, encoded by the
//! `prometheus-client` crate: it names the samples (`_total`, units,
//! `# UNIT` lines), escapes label values, formats numbers and ends the text
//! with `# EOF`. The values are not kept in that crate's metric types:
//! its counters and gauges are atomics meant to be bumped in place and its
//! `Family` is a label-keyed `HashMap`, while here the datapath has already
//! counted everything and we only publish a copy. So each render fills a
//! fresh `Registry` with constant families of our own ([`Family`], which
//! implements the crate's `EncodeMetric`): the samples come out in the
//! report's order (ports, then workers, by index), the same from one scrape
//! to the next, and nothing outlives the render. At a scrape every few
//! seconds, or a render per report every 100 ms, that is a few kilobytes of
//! short-lived allocation, nothing next to the datapath.
//!
//! The receive batch sizes are a real histogram,
//! `xvs_worker_rx_batch_size`: the worker sorts bursts into power-of-two
//! buckets (1, 2–3, 4–7, ..., 32–63, 64 = `BATCH_SIZE`), which are
//! cumulative buckets with `le` = 1, 3, 7, 15, 31, 63, 64 because burst
//! sizes are whole numbers; the `_sum` is exact, since every packet a
//! worker counts in `rx_packets` arrived in one of those bursts. Scrapers
//! can then use `histogram_quantile` and `_sum / _count` (the mean burst),
//! which a counter with a `size` label would not give them.
//!
//! Times are counted in nanoseconds and published in seconds (Prometheus'
//! base unit), as floating-point counters. A worker not pinned to a core has
//! `core=""` (to Prometheus, no core label). A port whose XDP counters could
//! not be read has no `xvs_port_xdp_packets_total` sample, rather than a 0
//! that would read as a counter reset. Every drop reason is published, 0
//! included, so a reason's first drop shows up in `rate()`.
//!
//! # Serving
//!
//! [`serve`] is a deliberately small HTTP/1.1 server for the control
//! thread's current-thread tokio runtime (which must have its I/O and time
//! drivers enabled). Each connection is its own task and carries one
//! request: the head is read up to [`MAX_HEAD`] bytes within
//! [`CLIENT_TIMEOUT`] (so a slow or silent client cannot pin a task),
//! answered, and the connection closed (`Connection: close`). `GET` and
//! `HEAD` of `/metrics` are answered with the text the `source` closure
//! returns; another path is 404, another method 405, a malformed request
//! 400, an HTTP version other than 1.x 505, an oversized head 431, a head
//! that does not arrive in time 408. No input makes it panic. Request
//! bodies are never read: after answering, the server half-closes and
//! discards what the client still sends for a moment (a "lingering close")
//! so that unread bytes do not turn the close into a reset that would
//! destroy the response before the client read it. At most
//! [`MAX_CONNECTIONS`] connections are served at once; further ones are
//! closed as soon as they are accepted.
//!
//! `source` runs on the runtime's thread for each scrape, so it must be
//! quick and must not block (render from the latest published report).
//! [`check_localhost`] refuses a bind address other than loopback: the
//! endpoint has no authentication and is meant for a scraper on the node.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use super::{PortReport, Report, WorkerReport};
use crate::drop::DropReason;
use crate::port::BATCH_SIZE;
use crate::worker::BATCH_BUCKETS;

/// What one render publishes: the latest report and what the report does
/// not carry.
#[derive(Debug, Clone)]
pub struct MetricsInput<'a> {
    pub report: &'a Report,
    /// Generation of the snapshot the workers run.
    pub generation: u64,
    /// Entries in the flow table, and how many it can hold.
    pub flows: usize,
    pub flow_capacity: usize,
    /// Services programmed.
    pub services: usize,
    /// Per SNAT source address: ports in use, and how many there are.
    pub snat_ports: Vec<(std::net::Ipv4Addr, usize, usize)>,
}

/// The content type of [`render`]'s text (OpenMetrics 1.0).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The longest request head read; a longer one is refused with 431.
pub const MAX_HEAD: usize = 8 * 1024;
/// How long a client has to send its request head, and then to take the
/// response.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long, and how many bytes, the lingering close discards.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;
/// The pause after an accept error that is not about one connection (out
/// of file descriptors, say), so that it is not retried in a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

// The last batch bucket holds bursts of 64 and up; bursts are at most
// BATCH_SIZE packets, so it is exactly "64" and its `le` is BATCH_SIZE.
const _: () = assert!(1 << (BATCH_BUCKETS - 1) == BATCH_SIZE);

/// Upper bounds of the batch-size buckets: 1, 3, 7, ..., 63, 64.
fn batch_upper_bound(bucket: usize) -> f64 {
    let bound = if bucket + 1 == BATCH_BUCKETS {
        BATCH_SIZE
    } else {
        (2 << bucket) - 1
    };
    bound as f64
}

/// A sample's labels, in the order they are printed.
type Labels = Vec<(&'static str, String)>;

/// The receive bursts of one worker.
#[derive(Debug)]
struct Bursts {
    /// Bursts per bucket, as `StageTimes::batches` (not cumulative).
    counts: [u64; BATCH_BUCKETS],
    /// Packets in those bursts.
    packets: u64,
}

/// One metric family with constant samples, printed in the order given.
#[derive(Debug)]
enum Family {
    Counter(Vec<(Labels, u64)>),
    /// A counter of seconds; register it with [`Unit::Seconds`].
    Seconds(Vec<(Labels, f64)>),
    Gauge(Vec<(Labels, u64)>),
    Histogram(Vec<(Labels, Bursts)>),
}

impl EncodeMetric for Family {
    fn encode(&self, mut encoder: MetricEncoder) -> std::fmt::Result {
        match self {
            Family::Counter(samples) => each(&mut encoder, samples, |e, v| {
                e.encode_counter::<NoLabelSet, _, u64>(v, None)
            }),
            Family::Seconds(samples) => each(&mut encoder, samples, |e, v| {
                e.encode_counter::<NoLabelSet, _, f64>(v, None)
            }),
            Family::Gauge(samples) => each(&mut encoder, samples, |e, v| e.encode_gauge(v)),
            Family::Histogram(samples) => each(&mut encoder, samples, |e, bursts| {
                let buckets: Vec<(f64, u64)> = bursts
                    .counts
                    .iter()
                    .enumerate()
                    .map(|(bucket, &n)| (batch_upper_bound(bucket), n))
                    .chain([(f64::INFINITY, 0)])
                    .collect();
                let count = bursts.counts.iter().sum();
                e.encode_histogram::<NoLabelSet>(bursts.packets as f64, count, &buckets, None)
            }),
        }
    }

    fn metric_type(&self) -> MetricType {
        match self {
            Family::Counter(_) | Family::Seconds(_) => MetricType::Counter,
            Family::Gauge(_) => MetricType::Gauge,
            Family::Histogram(_) => MetricType::Histogram,
        }
    }
}

/// Encodes each sample with `encode`, under its labels.
fn each<V>(
    encoder: &mut MetricEncoder,
    samples: &[(Labels, V)],
    mut encode: impl FnMut(&mut MetricEncoder, &V) -> std::fmt::Result,
) -> std::fmt::Result {
    for (labels, value) in samples {
        if labels.is_empty() {
            // Through `encode_family`, no labels would print as `{}`.
            encode(encoder, value)?;
        } else {
            encode(&mut encoder.encode_family(labels)?, value)?;
        }
    }
    Ok(())
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn port_labels(port: &PortReport) -> Labels {
    vec![("port", port.name.clone())]
}

/// The workers with their labels: index and core (`""` if not pinned).
fn workers(report: &Report) -> impl Iterator<Item = (Labels, &WorkerReport)> {
    report.workers.iter().enumerate().map(|(i, w)| {
        let core = w.core.map(|c| c.to_string()).unwrap_or_default();
        (vec![("worker", i.to_string()), ("core", core)], w)
    })
}

/// The OpenMetrics text of `input`, ending with `# EOF` (see the module
/// doc for the metrics and their names).
pub fn render(input: &MetricsInput) -> String {
    let report = input.report;
    let mut registry = Registry::with_prefix("xvs");

    let per_port = |value: fn(&PortReport) -> u64| {
        Family::Counter(
            report
                .ports
                .iter()
                .map(|p| (port_labels(p), value(p)))
                .collect(),
        )
    };
    registry.register(
        "port_rx_packets",
        "Packets received on the port",
        per_port(|p| p.counters.rx_packets),
    );
    registry.register_with_unit(
        "port_rx",
        "Bytes received on the port",
        Unit::Bytes,
        per_port(|p| p.counters.rx_bytes),
    );
    registry.register(
        "port_tx_packets",
        "Packets sent on the port",
        per_port(|p| p.counters.tx_packets),
    );
    registry.register_with_unit(
        "port_tx",
        "Bytes sent on the port",
        Unit::Bytes,
        per_port(|p| p.counters.tx_bytes),
    );
    registry.register(
        "port_handoff_packets",
        "Packets for the port passed from a worker without a queue of it to the worker that serves it",
        per_port(|p| p.counters.handed_off),
    );
    registry.register(
        "port_handoff_drops",
        "Packets for the port dropped because the worker that serves it was behind",
        per_port(|p| p.counters.handoff_drops),
    );
    let xdp = report.ports.iter().filter_map(|p| Some((p, p.steering?)));
    let xdp = xdp.flat_map(|(p, c)| {
        [
            ("redirected", c.redirected),
            ("passed", c.passed),
            ("dropped", c.dropped),
        ]
        .map(|(action, n)| {
            (
                [port_labels(p), vec![("action", action.into())]].concat(),
                n,
            )
        })
    });
    registry.register(
        "port_xdp_packets",
        "What the port's XDP program did with the packets it received: redirected to the switch, passed to the kernel, dropped",
        Family::Counter(xdp.collect()),
    );

    let per_worker = |value: fn(&WorkerReport) -> u64| {
        Family::Counter(workers(report).map(|(l, w)| (l, value(w))).collect())
    };
    registry.register(
        "worker_rx_packets",
        "Packets the worker received from its queues",
        per_worker(|w| w.rx_packets),
    );
    registry.register(
        "worker_tx_packets",
        "Packets the worker sent on its queues",
        per_worker(|w| w.tx_packets),
    );
    registry.register(
        "worker_tx_ring_full",
        "Packets the worker's tx rings had no room for",
        per_worker(|w| w.tx_ring_full),
    );
    registry.register(
        "worker_handoff_no_frame",
        "Packets handed over to the worker that found no free frame in its UMEM",
        per_worker(|w| w.handoff_no_frame),
    );
    registry.register(
        "worker_flow_hits",
        "Packets whose flow the worker found in the flow cache",
        per_worker(|w| w.flow_hits),
    );
    registry.register(
        "worker_flow_misses",
        "Packets the worker looked up in the flow cache and did not find (slow path)",
        per_worker(|w| w.flow_misses),
    );
    registry.register(
        "worker_conntrack_created",
        "Connections the worker started tracking",
        per_worker(|w| w.ct_created),
    );
    registry.register(
        "worker_service_connections",
        "New connections the worker load-balanced to a Service endpoint",
        per_worker(|w| w.svc_connections),
    );
    registry.register(
        "worker_service_tcp_resets",
        "TCP RSTs the worker sent for connections to Services without endpoints",
        per_worker(|w| w.tcp_resets),
    );
    registry.register(
        "worker_nat_port_remaps",
        "Service connections the worker gave another source port because their reply tuple was another connection's",
        per_worker(|w| w.nat_port_remaps),
    );
    registry.register(
        "worker_masqueraded_connections",
        "New connections the worker masqueraded to the node IP",
        per_worker(|w| w.snat_connections),
    );
    registry.register(
        "worker_handoff_stale",
        "Packets handed over to the worker under an older snapshot, dropped",
        per_worker(|w| w.handoff_stale),
    );
    registry.register(
        "worker_kernel_rx_ring_full",
        "Packets the kernel dropped because the rx ring of one of the worker's sockets was full",
        per_worker(|w| w.sockets.rx_ring_full),
    );
    registry.register(
        "worker_kernel_rx_fill_ring_empty",
        "Times the kernel found no frame in the fill ring of one of the worker's sockets for a packet",
        per_worker(|w| w.sockets.rx_fill_ring_empty),
    );
    registry.register(
        "worker_kernel_rx_dropped",
        "Packets the kernel dropped on the worker's sockets for other reasons",
        per_worker(|w| w.sockets.rx_dropped),
    );
    registry.register(
        "worker_kernel_rx_invalid_descs",
        "Fill-ring descriptors of the worker's sockets the kernel refused",
        per_worker(|w| w.sockets.rx_invalid_descs),
    );
    registry.register(
        "worker_kernel_tx_invalid_descs",
        "Tx-ring descriptors of the worker's sockets the kernel refused",
        per_worker(|w| w.sockets.tx_invalid_descs),
    );
    let per_worker_time = |ns: fn(&WorkerReport) -> u64| {
        Family::Seconds(workers(report).map(|(l, w)| (l, seconds(ns(w)))).collect())
    };
    registry.register_with_unit(
        "worker_busy",
        "Time the worker spent in poll rounds that found packets",
        Unit::Seconds,
        per_worker_time(|w| w.times.busy_ns()),
    );
    registry.register_with_unit(
        "worker_idle",
        "Time the worker spent in poll rounds that found nothing, and asleep",
        Unit::Seconds,
        per_worker_time(|w| w.times.idle_ns),
    );
    let stages = workers(report).flat_map(|(labels, w)| {
        let t = &w.times;
        [
            ("rx", t.rx_ns),
            ("pipeline", t.pipeline_ns),
            ("tx", t.tx_ns),
            ("handoff", t.handoff_ns),
        ]
        .map(|(stage, ns)| {
            let labels = [labels.clone(), vec![("stage", stage.into())]].concat();
            (labels, seconds(ns))
        })
    });
    registry.register_with_unit(
        "worker_stage",
        "Busy time of the worker by stage: rx bursts, the pipeline, tx bursts, hand-off between workers",
        Unit::Seconds,
        Family::Seconds(stages.collect()),
    );
    registry.register(
        "worker_busy_polls",
        "Poll rounds of the worker that found packets",
        per_worker(|w| w.times.busy_polls),
    );
    registry.register(
        "worker_idle_polls",
        "Poll rounds of the worker that found nothing",
        per_worker(|w| w.times.idle_polls),
    );
    let bursts = workers(report).map(|(labels, w)| {
        let bursts = Bursts {
            counts: w.times.batches,
            packets: w.rx_packets,
        };
        (labels, bursts)
    });
    registry.register(
        "worker_rx_batch_size",
        "Packets per rx burst of the worker",
        Family::Histogram(bursts.collect()),
    );

    let reason = |name: &str, n| (vec![("reason", name.to_string())], n);
    let count_of = |name| {
        let found = report.drops.iter().find(|(r, _)| *r == name);
        found.map_or(0, |(_, n)| *n)
    };
    let known = DropReason::ALL
        .iter()
        .map(|r| reason(r.name(), count_of(r.name())));
    // A reason this build does not know (not expected): published as well.
    let other = report
        .drops
        .iter()
        .filter(|(r, _)| !DropReason::ALL.iter().any(|known| known.name() == *r));
    let drops = known.chain(other.map(|(r, n)| reason(r, *n)));
    registry.register(
        "pipeline_drops",
        "Packets the pipeline dropped, by reason, over all workers",
        Family::Counter(drops.collect()),
    );

    let gauge = |value: usize| Family::Gauge(vec![(Labels::new(), value as u64)]);
    registry.register(
        "snapshot_generation",
        "Generation of the snapshot the workers run",
        Family::Gauge(vec![(Labels::new(), input.generation)]),
    );
    registry.register(
        "flow_table_entries",
        "Entries in the flow table",
        gauge(input.flows),
    );
    registry.register(
        "flow_table_capacity",
        "Entries the flow table can hold",
        gauge(input.flow_capacity),
    );
    registry.register("services", "Services programmed", gauge(input.services));
    let snat = |f: fn(&(std::net::Ipv4Addr, usize, usize)) -> usize| {
        Family::Gauge(
            input
                .snat_ports
                .iter()
                .map(|p| (vec![("address", p.0.to_string())], f(p) as u64))
                .collect(),
        )
    };
    registry.register(
        "snat_ports_in_use",
        "SNAT source ports held by connections, per source address",
        snat(|p| p.1),
    );
    registry.register(
        "snat_ports",
        "SNAT source ports there are, per source address",
        snat(|p| p.2),
    );

    let mut text = String::new();
    if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        // Writing into a String cannot fail and our families return no
        // error, so this is a bug; an empty exposition still parses.
        tracing::error!("encoding the metrics failed: {err}");
        text = "# EOF\n".into();
    }
    text
}

/// Refuses a bind address for the endpoint that is not loopback.
///
/// # Errors
/// What is wrong with `addr`, for the person who gave it.
pub fn check_localhost(addr: &SocketAddr) -> Result<(), String> {
    if addr.ip().to_canonical().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "{addr} is not a loopback address: the metrics endpoint has no authentication and \
         serves localhost only; give 127.0.0.1:{port} or [::1]:{port}",
        port = addr.port()
    ))
}

/// What a scrape answers with: a function returning the current text (for
/// example [`render`] of the latest report).
pub type Source = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves `GET /metrics` on `listener` with what `source` returns, one task
/// per connection (see the module doc). Runs until the task running it is
/// dropped.
///
/// # Errors
/// Only if the listener itself fails in a way retrying cannot help (an
/// accept error of one connection, or a shortage of file descriptors, is
/// logged and serving goes on).
pub async fn serve(listener: TcpListener, source: Source) -> io::Result<()> {
    serve_with(listener, source, Limits::default()).await
}

/// The limits of [`serve`], smaller in tests.
#[derive(Debug, Clone, Copy)]
struct Limits {
    client_timeout: Duration,
    max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            client_timeout: CLIENT_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

async fn serve_with(listener: TcpListener, source: Source, limits: Limits) -> io::Result<()> {
    // Each connection task holds a clone: the strong count less this one is
    // the number of connections being served.
    let in_flight = Arc::new(());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) if matches!(err.kind(), io::ErrorKind::InvalidInput) => return Err(err),
            Err(err) => {
                tracing::warn!("metrics endpoint: accepting a connection failed: {err}");
                if !is_connection_error(&err) {
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
                continue;
            }
        };
        if Arc::strong_count(&in_flight) > limits.max_connections {
            tracing::debug!(
                "metrics endpoint: {peer} refused, {} connections open",
                limits.max_connections
            );
            continue;
        }
        let ticket = in_flight.clone();
        let source = source.clone();
        tokio::spawn(async move {
            answer(stream, &source, limits.client_timeout).await;
            drop(ticket);
        });
    }
}

/// An accept error about one connection only (retried at once).
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Reads one request from `stream`, answers it and closes.
async fn answer(mut stream: TcpStream, source: &Source, client_timeout: Duration) {
    let response = match timeout(client_timeout, read_head(&mut stream)).await {
        Ok(Ok(Head::Complete(head))) => route(&head, source),
        Ok(Ok(Head::TooLarge)) => Response::error(Status::HeadTooLarge),
        Err(_elapsed) => Response::error(Status::Timeout),
        // Closed or broken before a whole head: nobody to answer.
        Ok(Ok(Head::Closed) | Err(_)) => return,
    };
    let sent = timeout(client_timeout, async {
        stream.write_all(&response.into_bytes()).await?;
        stream.shutdown().await?;
        linger(&mut stream).await;
        io::Result::Ok(())
    });
    if let Ok(Err(err)) = sent.await {
        tracing::debug!("metrics endpoint: sending a response failed: {err}");
    }
}

/// How reading a request head ended.
enum Head {
    /// The head, up to and including its blank line.
    Complete(Vec<u8>),
    /// [`MAX_HEAD`] bytes without a blank line.
    TooLarge,
    /// The client closed its side first.
    Closed,
}

async fn read_head(stream: &mut TcpStream) -> io::Result<Head> {
    let mut head = vec![0; MAX_HEAD];
    let mut len = 0;
    while len < MAX_HEAD {
        let n = stream.read(&mut head[len..]).await?;
        if n == 0 {
            return Ok(Head::Closed);
        }
        len += n;
        if let Some(end) = end_of_head(&head[..len]) {
            head.truncate(end);
            return Ok(Head::Complete(head));
        }
    }
    Ok(Head::TooLarge)
}

/// Where the head in `bytes` ends: after its first empty line (CRLF, or a
/// bare LF as RFC 9112 lets a server accept).
fn end_of_head(bytes: &[u8]) -> Option<usize> {
    bytes.iter().enumerate().find_map(|(i, &b)| {
        let rest = &bytes[i + 1..];
        if b != b'\n' {
            None
        } else if rest.starts_with(b"\n") {
            Some(i + 2)
        } else if rest.starts_with(b"\r\n") {
            Some(i + 3)
        } else {
            None
        }
    })
}

/// Discards what the client still sends, until it closes, for at most
/// [`LINGER_TIME`] and [`LINGER_BYTES`].
async fn linger(stream: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    let mut left = LINGER_BYTES;
    let _ = timeout(LINGER_TIME, async {
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    Timeout,
    HeadTooLarge,
    VersionNotSupported,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::Timeout => "408 Request Timeout",
            Status::HeadTooLarge => "431 Request Header Fields Too Large",
            Status::VersionNotSupported => "505 HTTP Version Not Supported",
        }
    }
}

#[derive(Debug)]
struct Response {
    status: Status,
    content_type: &'static str,
    body: String,
    /// `false` for an answer to HEAD: the headers only.
    send_body: bool,
}

impl Response {
    fn error(status: Status) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{}\n", status.line()),
            send_body: true,
        }
    }

    fn into_bytes(self) -> Vec<u8> {
        let allow = if self.status == Status::MethodNotAllowed {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        };
        let mut bytes = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
            self.status.line(),
            self.content_type,
            self.body.len(),
        )
        .into_bytes();
        if self.send_body {
            bytes.extend_from_slice(self.body.as_bytes());
        }
        bytes
    }
}

/// The answer to the request with head `head`; calls `source` for a scrape.
fn route(head: &[u8], source: &Source) -> Response {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(line) = std::str::from_utf8(line) else {
        return Response::error(Status::BadRequest);
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Response::error(Status::BadRequest);
    };
    if method.is_empty() || !method.bytes().all(is_token_char) || target.is_empty() {
        return Response::error(Status::BadRequest);
    }
    match version {
        "HTTP/1.1" | "HTTP/1.0" => {}
        v if v.starts_with("HTTP/") => return Response::error(Status::VersionNotSupported),
        _ => return Response::error(Status::BadRequest),
    }
    let send_body = method != "HEAD";
    let path = target.split_once('?').map_or(target, |(path, _query)| path);
    let response = if path != "/metrics" {
        Response::error(Status::NotFound)
    } else if method == "GET" || method == "HEAD" {
        Response {
            status: Status::Ok,
            content_type: CONTENT_TYPE,
            body: source(),
            send_body,
        }
    } else {
        Response::error(Status::MethodNotAllowed)
    };
    Response {
        send_body,
        ..response
    }
}

/// A character of an HTTP token (RFC 9110 `tchar`), such as a method.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use xvs_hw::steer::SteerCounters;
    use xvs_hw::xsk::{Accounting, SocketStats};

    use super::*;
    use crate::worker::{PortCounters, StageTimes};

    /// Two ports (one whose XDP counters could not be read, with a name
    /// that needs escaping) and two workers (one not pinned).
    fn report() -> Report {
        let worker = |core, rx_packets, batches| WorkerReport {
            core,
            tid: Some(4242),
            rx_packets,
            tx_packets: 3,
            handed_off: 0,
            handoff_drops: 0,
            handoff_no_frame: 1,
            handoff_stale: 2,
            tx_ring_full: 4,
            flow_hits: 8,
            flow_misses: 9,
            flows_added: 9,
            ct_created: 3,
            ct_invalid: 0,
            svc_connections: 0,
            snat_connections: 0,
            tcp_resets: 0,
            nat_port_remaps: 0,
            sockets: SocketStats {
                rx_ring_full: 5,
                rx_fill_ring_empty: 6,
                rx_dropped: 7,
                ..SocketStats::default()
            },
            accounting: Accounting::default(),
            times: StageTimes {
                rx_ns: 250_000_000,
                pipeline_ns: 500_000_000,
                tx_ns: 750_000_000,
                handoff_ns: 0,
                idle_ns: 2_000_000_000,
                busy_polls: 4,
                idle_polls: 10,
                packets: rx_packets,
                batches,
            },
        };
        Report {
            ports: vec![
                PortReport {
                    name: "veth1".into(),
                    counters: PortCounters {
                        rx_packets: 3,
                        rx_bytes: 180,
                        tx_packets: 2,
                        tx_bytes: 120,
                        handed_off: 8,
                        handoff_drops: 9,
                    },
                    steering: Some(SteerCounters {
                        redirected: 3,
                        passed: 1,
                        dropped: 0,
                    }),
                },
                PortReport {
                    name: r#"we"ird\"#.into(),
                    counters: PortCounters::default(),
                    steering: None,
                },
            ],
            workers: vec![
                // Bursts of 1, 1, 3 and 64 packets.
                worker(Some(1), 69, [2, 1, 0, 0, 0, 0, 1]),
                worker(None, 0, [0; BATCH_BUCKETS]),
            ],
            drops: vec![("ttl_expired", 2)],
        }
    }

    fn input(report: &Report) -> MetricsInput<'_> {
        MetricsInput {
            report,
            generation: 7,
            flows: 5,
            flow_capacity: 1024,
            services: 3,
            snat_ports: vec![("192.168.0.1".parse().unwrap(), 2, 4536)],
        }
    }

    /// Labels by name, unescaped.
    type LabelMap = BTreeMap<String, String>;

    /// An OpenMetrics text parsed strictly: the samples in the order
    /// printed, and the families' types.
    #[derive(Debug, Default)]
    struct Exposition {
        samples: Vec<(String, LabelMap, f64)>,
        types: BTreeMap<String, String>,
    }

    impl Exposition {
        /// The value of sample `name` with exactly `labels`.
        fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
            let labels: LabelMap = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let found = self
                .samples
                .iter()
                .find(|(n, l, _)| n == name && *l == labels);
            found.unwrap_or_else(|| panic!("no {name} {labels:?}")).2
        }
    }

    /// Parses `text` as the OpenMetrics grammar xvs uses (families of
    /// HELP, TYPE, optional UNIT, then samples named after the family;
    /// `# EOF` last) and checks histograms' buckets; panics on anything
    /// else, quoting the line.
    fn parse(text: &str) -> Exposition {
        let body = text.strip_suffix("# EOF\n").expect("ends with # EOF");
        let mut out = Exposition::default();
        let mut family: Option<(String, String)> = None;
        for line in body.lines() {
            if let Some(comment) = line.strip_prefix("# ") {
                let (keyword, rest) = comment.split_once(' ').expect(line);
                let (name, arg) = rest.split_once(' ').expect(line);
                assert!(is_metric_name(name), "{line}");
                match keyword {
                    "HELP" => {
                        assert!(!out.types.contains_key(name), "family twice: {line}");
                        family = Some((name.to_string(), String::new()));
                    }
                    "TYPE" => {
                        let (current, kind) = family.as_mut().expect(line);
                        assert_eq!(current, name, "{line}");
                        assert!(["counter", "gauge", "histogram"].contains(&arg), "{line}");
                        *kind = arg.to_string();
                        out.types.insert(name.to_string(), arg.to_string());
                    }
                    "UNIT" => assert!(name.ends_with(&format!("_{arg}")), "{line}"),
                    _ => panic!("unexpected comment: {line}"),
                }
                continue;
            }
            let (family, kind) = family.as_ref().expect(line);
            let (series, value) = line.rsplit_once(' ').expect(line);
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().expect(line),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, parse_labels(labels.strip_suffix('}').expect(line))),
                None => (series, LabelMap::new()),
            };
            let suffixes: &[&str] = match kind.as_str() {
                "counter" => &["_total"],
                "gauge" => &[""],
                _ => &["_bucket", "_sum", "_count"],
            };
            let suffix = name.strip_prefix(family.as_str()).expect(line);
            assert!(suffixes.contains(&suffix), "{line}");
            let twice = out
                .samples
                .iter()
                .any(|(n, l, _)| n == name && *l == labels);
            assert!(!twice, "twice: {line}");
            out.samples.push((name.to_string(), labels, value));
        }
        check_histograms(&out);
        out
    }

    fn is_metric_name(name: &str) -> bool {
        name.starts_with("xvs_") && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    }

    /// `k="v",...` with `\\`, `\"` and `\n` escapes.
    fn parse_labels(mut text: &str) -> LabelMap {
        let mut labels = LabelMap::new();
        while !text.is_empty() {
            let (key, rest) = text.split_once("=\"").expect(text);
            assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next().expect("a closing quote") {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().expect("an escape").1 {
                        'n' => value.push('\n'),
                        c @ ('\\' | '"') => value.push(c),
                        c => panic!("bad escape \\{c}"),
                    },
                    (_, c) => value.push(c),
                }
            };
            let first = labels.insert(key.to_string(), value).is_none();
            assert!(first, "label {key} twice");
            text = &rest[end + 1..];
            text = text.strip_prefix(',').unwrap_or(text);
        }
        labels
    }

    /// Buckets in `le` order and cumulative, the last `+Inf` and equal to
    /// `_count`.
    fn check_histograms(exposition: &Exposition) {
        let histograms = exposition.types.iter().filter(|(_, t)| *t == "histogram");
        for (family, _) in histograms {
            let mut by_series: BTreeMap<LabelMap, Vec<(f64, f64)>> = BTreeMap::new();
            let bucket = format!("{family}_bucket");
            for (_, labels, value) in exposition.samples.iter().filter(|(n, ..)| *n == bucket) {
                let mut series = labels.clone();
                let le = series.remove("le").expect("an le label");
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                by_series.entry(series).or_default().push((le, *value));
            }
            assert!(!by_series.is_empty(), "{family} has buckets");
            for (series, buckets) in by_series {
                assert!(buckets
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
                let count = exposition
                    .samples
                    .iter()
                    .find(|(n, l, _)| *n == format!("{family}_count") && *l == series);
                let last = buckets.last().unwrap();
                assert_eq!(*last, (f64::INFINITY, count.unwrap().2), "{series:?}");
            }
        }
    }

    #[test]
    fn the_report_renders_as_openmetrics() {
        let report = report();
        let text = render(&input(&report));
        for line in [
            "# TYPE xvs_port_rx_packets counter",
            r#"xvs_port_rx_packets_total{port="veth1"} 3"#,
            "# UNIT xvs_port_rx_bytes bytes",
            r#"xvs_port_rx_bytes_total{port="veth1"} 180"#,
            r#"xvs_port_tx_packets_total{port="veth1"} 2"#,
            r#"xvs_port_tx_bytes_total{port="veth1"} 120"#,
            r#"xvs_port_handoff_packets_total{port="veth1"} 8"#,
            r#"xvs_port_handoff_drops_total{port="veth1"} 9"#,
            r#"xvs_port_xdp_packets_total{port="veth1",action="redirected"} 3"#,
            r#"xvs_port_xdp_packets_total{port="veth1",action="passed"} 1"#,
            r#"xvs_port_xdp_packets_total{port="veth1",action="dropped"} 0"#,
            r#"xvs_port_rx_packets_total{port="we\"ird\\"} 0"#,
            r#"xvs_worker_rx_packets_total{worker="0",core="1"} 69"#,
            r#"xvs_worker_tx_packets_total{worker="0",core="1"} 3"#,
            r#"xvs_worker_tx_packets_total{worker="1",core=""} 3"#,
            r#"xvs_worker_tx_ring_full_total{worker="0",core="1"} 4"#,
            r#"xvs_worker_handoff_no_frame_total{worker="0",core="1"} 1"#,
            r#"xvs_worker_handoff_stale_total{worker="0",core="1"} 2"#,
            r#"xvs_worker_kernel_rx_ring_full_total{worker="0",core="1"} 5"#,
            r#"xvs_worker_kernel_rx_fill_ring_empty_total{worker="0",core="1"} 6"#,
            r#"xvs_worker_kernel_rx_dropped_total{worker="0",core="1"} 7"#,
            "# UNIT xvs_worker_busy_seconds seconds",
            r#"xvs_worker_busy_seconds_total{worker="0",core="1"} 1.5"#,
            r#"xvs_worker_idle_seconds_total{worker="0",core="1"} 2.0"#,
            r#"xvs_worker_stage_seconds_total{worker="0",core="1",stage="rx"} 0.25"#,
            r#"xvs_worker_stage_seconds_total{worker="0",core="1",stage="pipeline"} 0.5"#,
            r#"xvs_worker_stage_seconds_total{worker="0",core="1",stage="tx"} 0.75"#,
            r#"xvs_worker_stage_seconds_total{worker="0",core="1",stage="handoff"} 0.0"#,
            r#"xvs_worker_busy_polls_total{worker="0",core="1"} 4"#,
            r#"xvs_worker_idle_polls_total{worker="0",core="1"} 10"#,
            "# TYPE xvs_worker_rx_batch_size histogram",
            r#"xvs_worker_rx_batch_size_sum{worker="0",core="1"} 69.0"#,
            r#"xvs_worker_rx_batch_size_count{worker="0",core="1"} 4"#,
            // (prometheus-client prints `le` first.)
            r#"xvs_worker_rx_batch_size_bucket{le="1.0",worker="0",core="1"} 2"#,
            r#"xvs_worker_rx_batch_size_bucket{le="3.0",worker="0",core="1"} 3"#,
            r#"xvs_worker_rx_batch_size_bucket{le="63.0",worker="0",core="1"} 3"#,
            r#"xvs_worker_rx_batch_size_bucket{le="64.0",worker="0",core="1"} 4"#,
            r#"xvs_worker_rx_batch_size_bucket{le="+Inf",worker="0",core="1"} 4"#,
            r#"xvs_pipeline_drops_total{reason="ttl_expired"} 2"#,
            r#"xvs_pipeline_drops_total{reason="no_route"} 0"#,
            "# TYPE xvs_snapshot_generation gauge",
            "xvs_snapshot_generation 7",
            "xvs_flow_table_entries 5",
            "xvs_flow_table_capacity 1024",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\nnot in:\n{text}");
        }
        assert!(text.ends_with("\n# EOF\n"), "{text}");
        assert!(
            !text.contains(r#"xvs_port_xdp_packets_total{port="we"#),
            "no XDP samples without XDP counters"
        );
    }

    #[test]
    fn the_text_parses_back_to_the_report() {
        let report = report();
        let parsed = parse(&render(&input(&report)));
        let (w0, w1) = (
            [("worker", "0"), ("core", "1")],
            [("worker", "1"), ("core", "")],
        );
        assert_eq!(
            parsed.get("xvs_port_rx_packets_total", &[("port", "veth1")]),
            3.0
        );
        assert_eq!(
            parsed.get("xvs_port_rx_packets_total", &[("port", r#"we"ird\"#)]),
            0.0
        );
        assert_eq!(parsed.get("xvs_worker_busy_seconds_total", &w1), 1.5);
        let le = |le| [w0[0], w0[1], ("le", le)];
        assert_eq!(
            parsed.get("xvs_worker_rx_batch_size_bucket", &le("3.0")),
            3.0
        );
        assert_eq!(
            parsed.get("xvs_worker_rx_batch_size_bucket", &le("+Inf")),
            4.0
        );
        assert_eq!(parsed.get("xvs_worker_rx_batch_size_sum", &w0), 69.0);
        assert_eq!(parsed.get("xvs_flow_table_capacity", &[]), 1024.0);
        let reasons = parsed.samples.iter();
        let reasons = reasons.filter(|(name, ..)| name == "xvs_pipeline_drops_total");
        assert_eq!(reasons.count(), DropReason::COUNT, "every reason");
        // Busy time is the stages' sum, in each worker.
        for w in [w0, w1] {
            let stages: f64 = ["rx", "pipeline", "tx", "handoff"]
                .map(|stage| {
                    parsed.get(
                        "xvs_worker_stage_seconds_total",
                        &[w[0], w[1], ("stage", stage)],
                    )
                })
                .iter()
                .sum();
            assert_eq!(stages, parsed.get("xvs_worker_busy_seconds_total", &w));
        }
        let kinds = |kind: &str| parsed.types.values().filter(|t| *t == kind).count();
        assert_eq!((kinds("gauge"), kinds("histogram")), (6, 1));
        assert_eq!(parsed.get("xvs_services", &[]), 3.0);
        let snat = [("address", "192.168.0.1")];
        assert_eq!(parsed.get("xvs_snat_ports_in_use", &snat), 2.0);
        assert_eq!(parsed.get("xvs_snat_ports", &snat), 4536.0);
    }

    #[test]
    fn the_same_report_renders_the_same_text() {
        let report = report();
        assert_eq!(render(&input(&report)), render(&input(&report)));
    }

    #[test]
    fn only_loopback_addresses_may_serve() {
        for ok in [
            "127.0.0.1:9100",
            "127.1.2.3:9100",
            "[::1]:9100",
            "[::ffff:127.0.0.1]:9100",
        ] {
            assert_eq!(check_localhost(&ok.parse().unwrap()), Ok(()), "{ok}");
        }
        for bad in ["0.0.0.0:9100", "10.0.0.1:9100", "[::]:9100"] {
            let err = check_localhost(&bad.parse().unwrap()).unwrap_err();
            assert!(err.contains("not a loopback address"), "{err}");
            assert!(err.contains("127.0.0.1:9100"), "{err}");
        }
    }

    const BODY: &str = "xvs_test 1\n# EOF\n";

    fn source() -> Source {
        Arc::new(|| BODY.to_string())
    }

    /// Serves [`BODY`] on a fresh loopback port.
    async fn server(limits: Limits) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_with(listener, source(), limits));
        addr
    }

    /// Sends `request` and reads until the server closes.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut response = Vec::new();
        timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
            .await
            .expect("the server closes")
            .expect("no reset");
        String::from_utf8_lossy(&response).into_owned()
    }

    fn status_of(response: &str) -> &str {
        response.lines().next().unwrap_or_default()
    }

    #[tokio::test]
    async fn a_scrape_gets_the_text() {
        let addr = server(Limits::default()).await;
        let response = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert_eq!(status_of(head), "HTTP/1.1 200 OK");
        assert!(
            head.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")),
            "{head}"
        );
        assert!(
            head.contains(&format!("Content-Length: {}\r\n", BODY.len())),
            "{head}"
        );
        assert!(head.contains("Connection: close"), "{head}");
        assert_eq!(body, BODY);

        let response = exchange(addr, b"GET /metrics?x=1 HTTP/1.0\n\n").await;
        assert!(response.ends_with(BODY), "a query, bare LFs: {response}");

        let response = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status_of(&response), "HTTP/1.1 200 OK");
        assert!(response.contains(&format!("Content-Length: {}\r\n", BODY.len())));
        assert!(response.ends_with("\r\n\r\n"), "no body: {response}");
    }

    #[tokio::test]
    async fn other_paths_methods_and_garbage_are_refused() {
        let addr = server(Limits::default()).await;
        let cases: [(&[u8], &str); 8] = [
            (b"GET /other HTTP/1.1\r\n\r\n", "404 Not Found"),
            (b"GET /metrics/ HTTP/1.1\r\n\r\n", "404 Not Found"),
            (
                b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\na=1",
                "405 Method Not Allowed",
            ),
            (b"\x00\xff\xfe garbage\r\n\r\n", "400 Bad Request"),
            (b"GET  /metrics HTTP/1.1\r\n\r\n", "400 Bad Request"),
            (b"G(T /metrics HTTP/1.1\r\n\r\n", "400 Bad Request"),
            (b"GET /metrics SPDY/3\r\n\r\n", "400 Bad Request"),
            (
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                "505 HTTP Version Not Supported",
            ),
        ];
        for (request, status) in cases {
            let response = exchange(addr, request).await;
            assert_eq!(
                status_of(&response),
                format!("HTTP/1.1 {status}"),
                "{}",
                String::from_utf8_lossy(request)
            );
        }
        let response = exchange(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n").await;
        assert!(response.contains("Allow: GET, HEAD\r\n"), "{response}");

        // Half a request, then the client closes its side: no answer.
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /met").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut response = Vec::new();
        timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
            .await
            .expect("closed at once")
            .unwrap();
        assert_eq!(response, b"");
        let response = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(response.ends_with(BODY), "still serving");
    }

    #[tokio::test]
    async fn an_oversized_head_is_refused() {
        let addr = server(Limits::default()).await;
        let mut request = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
        request.resize(3 * MAX_HEAD, b'a');
        let response = exchange(addr, &request).await;
        assert_eq!(
            status_of(&response),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );

        // Just fitting is fine.
        let mut request = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
        request.resize(MAX_HEAD - 4, b'a');
        request.extend_from_slice(b"\r\n\r\n");
        assert!(exchange(addr, &request).await.ends_with(BODY));
    }

    #[tokio::test]
    async fn a_slow_client_times_out() {
        let limits = Limits {
            client_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let addr = server(limits).await;
        let started = std::time::Instant::now();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /metr").await.unwrap();
        let mut response = String::new();
        timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
            .await
            .expect("closed after the timeout")
            .unwrap();
        assert_eq!(status_of(&response), "HTTP/1.1 408 Request Timeout");
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_closed() {
        let limits = Limits {
            max_connections: 1,
            ..Limits::default()
        };
        let addr = server(limits).await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        // On this single-threaded runtime, the server accepts it meanwhile.
        tokio::time::sleep(Duration::from_millis(50)).await;

        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        let refused = timeout(Duration::from_secs(5), second.read_to_end(&mut buf))
            .await
            .expect("closed at once");
        assert!(refused.is_err() || buf.is_empty(), "{buf:?}");

        first
            .write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        first.read_to_string(&mut response).await.unwrap();
        assert!(response.ends_with(BODY), "{response}");
        // The server lingers until the client closes too.
        drop(first);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let response = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(response.ends_with(BODY), "a slot again: {response}");
    }

    proptest! {
        #[test]
        fn any_head_gets_a_well_formed_answer(head in prop::collection::vec(any::<u8>(), 0..200)) {
            let text = String::from_utf8(route(&head, &source()).into_bytes()).unwrap();
            prop_assert!(text.starts_with("HTTP/1.1 "), "{}", text);
            prop_assert!(text.contains("\r\nConnection: close\r\n\r\n"), "{}", text);
        }

        #[test]
        fn the_head_ends_at_the_first_empty_line(line in "[ -~]{0,40}", rest in "[ -~\r\n]{0,40}") {
            let head = format!("{line}\r\n\r\n{rest}");
            prop_assert_eq!(end_of_head(head.as_bytes()), Some(line.len() + 4));
        }
    }
}
