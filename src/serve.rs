//! Serving HTTP on every port the gateway and the controller listen on, so that a flood of idle
//! connections on one port (the public webhook port) cannot starve the others, the store or the
//! configuration watch of file descriptors:
//!
//! - HTTP/1 through hyper's connection builder with a header read timeout. hyper counts the wait
//!   for a request's headers from the connection's start and, on a kept-alive connection, from
//!   the end of the previous response, so the same timeout closes idle keep-alive connections.
//! - A deadline on each request's body from its headers on ([`DeadlineBody`]).
//! - A cap on each port's open connections, a share of the process's open-file limit
//!   ([`caps`]). At the cap a new connection closes the one that has waited longest for its
//!   headers; only when every connection is serving a request is the new one refused.
//! - Graceful shutdown: on the signal the port stops accepting, idle connections close and
//!   requests in flight finish.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Sleep;
use tower::ServiceExt;

use crate::api::duration;
use crate::metrics::{Connections, PortLabels};

/// How long every listening port waits for a client (flags of `gateway` and `controller`).
#[derive(Clone, Copy, Debug, clap::Args)]
pub struct Timeouts {
    /// Longest wait for a request's headers, from the connection's start or the end of the
    /// previous response (so also how long an idle keep-alive connection stays open).
    #[arg(long, value_parser = positive_duration, default_value = "5s")]
    pub header_read_timeout: Duration,
    /// Longest time to receive a request's body, from its headers.
    #[arg(long, value_parser = positive_duration, default_value = "30s")]
    pub body_read_timeout: Duration,
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    duration::parse_flag(text).and_then(|d| if d.is_zero() { Err("must be more than 0s".to_owned()) } else { Ok(d) })
}

/// The process's open-file limit (the soft `RLIMIT_NOFILE`); None when unlimited.
pub fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// File descriptors kept for everything but the listening ports' connections: the store,
/// outgoing HTTP (providers, desks, the Kubernetes API), the configuration watch, logs.
fn reserve(limit: u64) -> u64 {
    (limit / 4).clamp(16, 4096)
}

/// Each port's cap on open connections: the open-file limit less a reserve, split by `shares`
/// (at least one connection each). Unlimited without a limit.
pub fn caps<const N: usize>(limit: Option<u64>, shares: [u64; N]) -> [usize; N] {
    let total = shares.iter().sum::<u64>().max(1);
    shares.map(|share| match limit {
        None => usize::MAX,
        Some(limit) => {
            let available = u128::from(limit.saturating_sub(reserve(limit)));
            usize::try_from(available * u128::from(share) / u128::from(total)).unwrap_or(usize::MAX).max(1)
        }
    })
}

/// One listening port.
pub struct Port {
    /// Its name in metrics and logs (`webhook`, `agent_api`, `metrics`, `probe`).
    pub name: &'static str,
    /// The bound listener.
    pub listener: TcpListener,
    /// Most connections open at once.
    pub cap: usize,
}

/// Serves `router` on `port` until `shutdown` completes, then lets requests in flight finish.
pub async fn serve(port: Port, router: Router, timeouts: Timeouts, metrics: &Connections, shutdown: impl Future<Output = ()> + Send) {
    let Port { name, listener, cap } = port;
    let slots = Arc::new(Slots::new(name, cap, metrics));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // A connection reset before it was accepted is the client's business; anything
                    // else (out of descriptors) would spin, so pause.
                    if !matches!(error.kind(), std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::Interrupted) {
                        tracing::warn!(port = name, %error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
        };
        let close = Arc::new(Notify::new());
        let Some(id) = slots.admit(Instant::now(), Arc::clone(&close)) else { continue };
        let connection = Connection { id, slots: Arc::clone(&slots), close, router: router.clone(), timeouts };
        tokio::spawn(connection.serve(stream, graceful.watcher()));
    }
    drop(listener);
    graceful.shutdown().await;
}

/// One accepted connection.
struct Connection {
    id: u64,
    slots: Arc<Slots>,
    close: Arc<Notify>,
    router: Router,
    timeouts: Timeouts,
}

impl Connection {
    async fn serve(self, stream: TcpStream, watcher: Watcher) {
        let Connection { id, slots, close, router, timeouts } = self;
        let _slot = Release(Arc::clone(&slots), id);
        let marks = Arc::clone(&slots);
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            marks.busy(id);
            let response = router.clone().oneshot(request.map(|body| DeadlineBody::new(body, timeouts.body_read_timeout)));
            let marks = Arc::clone(&marks);
            async move {
                let response = response.await;
                marks.waiting(id, Instant::now());
                response
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(timeouts.header_read_timeout);
        let connection = watcher.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::select! {
            served = connection => if let Err(error) = served {
                if error.is_timeout() {
                    slots.metrics.timed_out.inc();
                }
                tracing::debug!(port = slots.name, %error, "connection ended with an error");
            },
            // Dropping the connection closes it.
            () = close.notified() => tracing::debug!(port = slots.name, "closed the connection waiting longest for its headers to make room"),
        }
    }
}

/// Frees a connection's slot when its task ends, however it ends.
struct Release(Arc<Slots>, u64);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.release(self.1);
    }
}

/// A port's metrics.
struct PortMetrics {
    open: Gauge,
    refused: Counter,
    evicted: Counter,
    timed_out: Counter,
}

/// A port's open connections, behind a lock.
struct Slots {
    name: &'static str,
    cap: usize,
    metrics: PortMetrics,
    table: Mutex<Table>,
}

impl Slots {
    fn new(name: &'static str, cap: usize, connections: &Connections) -> Self {
        let labels = PortLabels { port: name };
        connections.limit.get_or_create(&labels).set(i64::try_from(cap).unwrap_or(i64::MAX));
        let metrics = PortMetrics {
            open: connections.open.get_or_create(&labels).clone(),
            refused: connections.refused.get_or_create(&labels).clone(),
            evicted: connections.evicted.get_or_create(&labels).clone(),
            timed_out: connections.timed_out.get_or_create(&labels).clone(),
        };
        Self { name, cap, metrics, table: Mutex::new(Table::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a new connection; None when it is refused.
    fn admit(&self, now: Instant, close: Arc<Notify>) -> Option<u64> {
        let mut table = self.lock();
        let admission = table.admit(self.cap, now, close);
        self.metrics.open.set(table.open.len() as i64);
        let full = !matches!(admission, Admission::Admitted(_));
        if full && !table.full {
            table.full = true;
            tracing::warn!(
                port = self.name,
                cap = self.cap,
                "the port is at its cap of open connections (a share of the open-file limit); the connection waiting longest for its headers is closed for each new one"
            );
        }
        match admission {
            Admission::Admitted(id) => Some(id),
            Admission::Evicted(id) => {
                self.metrics.evicted.inc();
                Some(id)
            }
            Admission::Refused => {
                self.metrics.refused.inc();
                None
            }
        }
    }

    fn busy(&self, id: u64) {
        self.lock().busy(id);
    }

    fn waiting(&self, id: u64, now: Instant) {
        self.lock().waiting(id, now);
    }

    fn release(&self, id: u64) {
        let mut table = self.lock();
        table.release(id);
        self.metrics.open.set(table.open.len() as i64);
        if table.full && table.open.len() <= self.cap / 2 {
            table.full = false;
            tracing::info!(port = self.name, open = table.open.len(), "the port is below its cap of open connections again");
        }
    }
}

/// How a new connection was taken.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    /// Into a free slot.
    Admitted(u64),
    /// Into the slot of the connection that had waited longest for its headers, now closed.
    Evicted(u64),
    /// Not: every connection is serving a request.
    Refused,
}

/// Open connections and which of them wait for a request's headers. Pure.
#[derive(Debug, Default)]
struct Table {
    next: u64,
    /// Every open connection: since when it waits for headers (None while a request is served),
    /// and how to close it.
    open: HashMap<u64, (Option<Instant>, Arc<Notify>)>,
    /// The connections waiting for headers, longest first.
    waiting: BTreeSet<(Instant, u64)>,
    /// The cap was reached (and logged) since the port was last half empty.
    full: bool,
}

impl Table {
    fn admit(&mut self, cap: usize, now: Instant, close: Arc<Notify>) -> Admission {
        let mut evicted = false;
        if self.open.len() >= cap {
            let Some((_, longest)) = self.waiting.pop_first() else { return Admission::Refused };
            if let Some((_, close)) = self.open.remove(&longest) {
                close.notify_one();
            }
            evicted = true;
        }
        let id = self.next;
        self.next += 1;
        self.open.insert(id, (Some(now), close));
        self.waiting.insert((now, id));
        if evicted { Admission::Evicted(id) } else { Admission::Admitted(id) }
    }

    /// A request's headers arrived.
    fn busy(&mut self, id: u64) {
        if let Some((since, _)) = self.open.get_mut(&id)
            && let Some(since) = since.take()
        {
            self.waiting.remove(&(since, id));
        }
    }

    /// The response is out; the connection waits for the next request's headers.
    fn waiting(&mut self, id: u64, now: Instant) {
        if let Some((since, _)) = self.open.get_mut(&id) {
            if let Some(old) = since.replace(now) {
                self.waiting.remove(&(old, id));
            }
            self.waiting.insert((now, id));
        }
    }

    fn release(&mut self, id: u64) {
        if let Some((Some(since), _)) = self.open.remove(&id) {
            self.waiting.remove(&(since, id));
        }
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client did not send the whole body in time.
    #[error("the request body did not arrive within {0:?} (--body-read-timeout)")]
    Timeout(Duration),
    /// The connection failed.
    #[error(transparent)]
    Read(#[from] hyper::Error),
}

/// Whether reading a body failed because it missed its deadline (see [`DeadlineBody`]), however
/// deep in `error`'s sources that is.
pub fn body_timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if matches!(e.downcast_ref::<BodyError>(), Some(BodyError::Timeout(_))) {
            return true;
        }
        source = e.source();
    }
    false
}

/// A request body that fails once `timeout` has passed since its headers arrived. Unlike a
/// timeout between frames (tower-http's `TimeoutBody`), a client trickling a byte at a time
/// cannot hold its connection past the deadline.
pub struct DeadlineBody {
    body: Incoming,
    timeout: Duration,
    /// None when the body is empty.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl DeadlineBody {
    fn new(body: Incoming, timeout: Duration) -> Self {
        let deadline = (!body.is_end_stream()).then(|| Box::pin(tokio::time::sleep(timeout)));
        Self { body, timeout, deadline }
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(BodyError::from)));
        }
        match this.deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Some(Err(BodyError::Timeout(this.timeout)))),
            _ => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use futures::FutureExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::{Semaphore, oneshot};

    use super::*;

    #[test]
    fn caps_split_the_open_file_limit_less_a_reserve() {
        assert_eq!(caps(Some(1024), [2, 1, 1]), [384, 192, 192], "a quarter of 1,024 kept back");
        assert_eq!(caps(Some(20_000), [2, 1, 1]), [7_952, 3_976, 3_976], "at most 4,096 kept back");
        assert_eq!(caps(Some(1024), [1]), [768]);
        assert_eq!(caps(Some(10), [2, 1, 1]), [1, 1, 1], "every port takes a connection");
        assert_eq!(caps(None, [2, 1]), [usize::MAX, usize::MAX], "no limit, no cap");
    }

    fn closed(notify: &Notify) -> bool {
        notify.notified().now_or_never().is_some()
    }

    #[test]
    fn at_the_cap_the_connection_waiting_longest_for_its_headers_makes_room() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut table = Table::default();
        let closes: Vec<Arc<Notify>> = (0..5).map(|_| Arc::new(Notify::new())).collect();
        assert_eq!(table.admit(3, at(0), closes[0].clone()), Admission::Admitted(0));
        assert_eq!(table.admit(3, at(1), closes[1].clone()), Admission::Admitted(1));
        assert_eq!(table.admit(3, at(2), closes[2].clone()), Admission::Admitted(2));
        // 0 serves a request, then 1 does and goes back to waiting (since 3): 2 waits longest.
        table.busy(0);
        table.busy(1);
        table.waiting(1, at(3));
        assert_eq!(table.admit(3, at(4), closes[3].clone()), Admission::Evicted(3));
        assert!(closed(&closes[2]), "the longest waiting is closed");
        assert!(!closed(&closes[0]) && !closed(&closes[1]));
        assert_eq!(table.open.len(), 3);
        // Everyone serving: the new one is refused, nobody closed.
        table.busy(1);
        table.busy(3);
        assert_eq!(table.admit(3, at(5), closes[4].clone()), Admission::Refused);
        assert!(!closed(&closes[0]) && !closed(&closes[1]) && !closed(&closes[3]));
        table.release(0);
        assert_eq!(table.admit(3, at(6), closes[4].clone()), Admission::Admitted(4));
        for id in [1, 3, 4] {
            table.release(id);
        }
        assert!(table.open.is_empty() && table.waiting.is_empty());
    }

    const SHORT: Duration = Duration::from_millis(300);

    /// Serves `router` on a loopback port; returns its address, the metrics, the stop switch and
    /// the serving task.
    async fn start(router: Router, cap: usize, header_read_timeout: Duration) -> (SocketAddr, Connections, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Connections::default();
        let metrics = connections.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let timeouts = Timeouts { header_read_timeout, body_read_timeout: SHORT };
        let task = tokio::spawn(async move {
            let port = Port { name: "test", listener, cap };
            serve(port, router, timeouts, &metrics, async { stopped.await.unwrap_or_default() }).await;
        });
        (addr, connections, stop, task)
    }

    /// Reads until the server closes the connection; returns what it sent and how long that took.
    async fn until_closed(stream: &mut TcpStream) -> (String, Duration) {
        let started = Instant::now();
        let mut text = Vec::new();
        let mut buffer = [0u8; 1024];
        while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await
            && n > 0
        {
            text.extend_from_slice(&buffer[..n]);
        }
        (String::from_utf8_lossy(&text).into_owned(), started.elapsed())
    }

    fn count(family: &prometheus_client::metrics::family::Family<PortLabels, Counter>) -> u64 {
        family.get_or_create(&PortLabels { port: "test" }).get()
    }

    #[tokio::test]
    async fn connections_without_headers_and_idle_keep_alive_ones_are_closed_after_the_header_timeout() {
        let (addr, connections, _stop, _task) = start(Router::new().route("/", get(|| async { "ok" })), 8, SHORT).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        silent.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let (answer, took) = until_closed(&mut silent).await;
        assert_eq!(answer, "", "closed without an answer");
        assert!(took >= SHORT - Duration::from_millis(50) && took < Duration::from_secs(3), "closed after the header timeout: {took:?}");

        let mut kept = TcpStream::connect(addr).await.unwrap();
        kept.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let (answer, took) = until_closed(&mut kept).await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"), "{answer}");
        assert!(took < Duration::from_secs(3), "the idle keep-alive connection is closed too: {took:?}");
        assert_eq!(count(&connections.timed_out), 2);
    }

    #[tokio::test]
    async fn a_body_trickling_in_fails_at_its_deadline() {
        async fn read(body: axum::body::Body) -> StatusCode {
            match axum::body::to_bytes(body, 1 << 20).await {
                Ok(_) => StatusCode::OK,
                Err(e) if body_timed_out(&e) => StatusCode::REQUEST_TIMEOUT,
                Err(_) => StatusCode::BAD_REQUEST,
            }
        }
        let (addr, _, _stop, _task) = start(Router::new().route("/", post(read)), 8, Duration::from_secs(10)).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n").await.unwrap();
        // A byte every 100 ms: never quiet for the timeout, yet not done by the deadline.
        let started = Instant::now();
        let mut answer = [0u8; 12];
        loop {
            tokio::select! {
                read = stream.read_exact(&mut answer) => {
                    read.unwrap();
                    break;
                }
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    let _ = stream.write_all(b"x").await;
                }
            }
        }
        assert_eq!(&answer, b"HTTP/1.1 408", "{}", String::from_utf8_lossy(&answer));
        assert!(started.elapsed() < Duration::from_secs(3), "answered at the deadline: {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn at_its_cap_a_port_closes_the_connection_waiting_longest_or_refuses_when_all_serve_and_drains_on_shutdown() {
        let gate = Arc::new(Semaphore::new(0));
        let entered = Arc::new(AtomicUsize::new(0));
        let router = {
            let (gate, entered) = (Arc::clone(&gate), Arc::clone(&entered));
            Router::new().route(
                "/wait",
                get(move || async move {
                    entered.fetch_add(1, Ordering::SeqCst);
                    let _permit = gate.acquire().await;
                    "done"
                }),
            )
        };
        let (addr, connections, stop, task) = start(router, 2, Duration::from_secs(10)).await;
        let mut oldest = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut second = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut third = TcpStream::connect(addr).await.unwrap();
        let (answer, took) = until_closed(&mut oldest).await;
        assert!(answer.is_empty() && took < Duration::from_secs(3), "the oldest waiting connection made room");
        assert_eq!(count(&connections.evicted), 1);

        // Both slots serve a request: a new connection is refused, nobody else is closed.
        for stream in [&mut second, &mut third] {
            stream.write_all(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        }
        while entered.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut refused = TcpStream::connect(addr).await.unwrap();
        let (answer, took) = until_closed(&mut refused).await;
        assert!(answer.is_empty() && took < Duration::from_secs(3), "refused at once");
        assert_eq!((count(&connections.refused), count(&connections.evicted)), (1, 1));

        // Shutdown lets the requests in flight finish, then the port stops.
        stop.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        gate.add_permits(2);
        for stream in [&mut second, &mut third] {
            let (answer, _) = until_closed(stream).await;
            assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("done"), "{answer}");
        }
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("the port stopped").unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "no longer listening");
        assert_eq!(connections.open.get_or_create(&PortLabels { port: "test" }).get(), 0);
    }
}
