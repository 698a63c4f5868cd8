//! Accepted connections, counted and watched, so that no client, careless or
//! hostile, can take the connections everyone else needs:
//!
//! * at most `max` open at once, and at most `per_peer` from one address
//!   (the one past either is closed at once, so its client fails fast
//!   instead of hanging);
//! * a connection must say something within `handshake`: at least
//!   [`HANDSHAKE_BYTES`] bytes (a TLS ClientHello, or the HTTP/2 preface and
//!   its SETTINGS frame), else it is closed: a thousand sockets that send
//!   nothing hold no slot for longer than that;
//! * a connection from which nothing is read for `idle` is closed. The
//!   server pings every connection over HTTP/2 (`--keepalive-interval`), so
//!   a live client, even one only watching, always answers within it; a
//!   socket that stopped answering, or a client stuck half-way through a
//!   header block, does not.
//!
//! Each has TCP_NODELAY set, so a small reply is not held back by Nagle's
//! algorithm waiting for the client's delayed ACK.

use std::{
    collections::HashMap,
    future::Future,
    io,
    net::IpAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{mpsc, OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::service::metrics::Metrics;

/// What a connection must send within the handshake timeout: the HTTP/2
/// preface (24 bytes) and a SETTINGS frame header (9); any TLS ClientHello
/// is longer.
pub const HANDSHAKE_BYTES: u64 = 33;

/// The limits on client connections.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// Open at once; the one past it is closed at once.
    pub max: usize,
    /// Open at once from one peer address.
    pub per_peer: usize,
    /// Time to send [`HANDSHAKE_BYTES`].
    pub handshake: Duration,
    /// Time without a byte read before the connection is closed.
    pub idle: Duration,
    /// HTTP/2 pings to every connection this often; a live client answers.
    pub keepalive_interval: Duration,
    /// A ping unanswered this long closes the connection.
    pub keepalive_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max: 1_024,
            per_peer: 256,
            handshake: Duration::from_secs(5),
            idle: Duration::from_secs(120),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

/// An accepted connection holding one of the server's connection slots and
/// one of its peer's until it closes.
pub struct Counted {
    stream: TcpStream,
    read: u64,
    handshake: Pin<Box<Sleep>>,
    idle: Pin<Box<Sleep>>,
    idle_for: Duration,
    metrics: Arc<Metrics>,
    _slot: OwnedSemaphorePermit,
    _peer: PeerSlot,
    _gauge: crate::service::metrics::GaugeGuard,
}

/// One of a peer address's connections; given back when dropped.
struct PeerSlot {
    peer: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PeerSlot {
    fn take(open: &Arc<Mutex<HashMap<IpAddr, usize>>>, peer: IpAddr, most: usize) -> Option<PeerSlot> {
        let mut counts = open.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(peer).or_default();
        if *count >= most.max(1) {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            peer,
            open: open.clone(),
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.peer);
            }
        }
    }
}

/// Accepts connections from `listener` until the returned stream is dropped.
pub fn accept(
    listener: TcpListener,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
) -> ReceiverStream<io::Result<Counted>> {
    let (sender, receiver) = mpsc::channel(16);
    let slots = Arc::new(Semaphore::new(limits.max.max(1)));
    let peers: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = sender.closed() => return,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a moment
                    // rather than spin; the server keeps serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(peer_slot) = PeerSlot::take(&peers, peer.ip(), limits.per_peer) else {
                metrics.connection_closed("peer_limit");
                tracing::warn!(%peer, per_peer = limits.per_peer, "connection refused: this address has the most connections one address may keep open (--max-connections-per-peer)");
                drop(stream);
                continue;
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                metrics.connection_refused();
                tracing::warn!(%peer, max = limits.max, "connection refused: the server has the most connections it keeps open (--max-connections)");
                drop(stream);
                continue;
            };
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "cannot set TCP_NODELAY");
            }
            let now = Instant::now();
            let counted = Counted {
                stream,
                read: 0,
                handshake: Box::pin(tokio::time::sleep_until(now + limits.handshake)),
                idle: Box::pin(tokio::time::sleep_until(now + limits.idle)),
                idle_for: limits.idle,
                _gauge: metrics.connection_opened(),
                metrics: metrics.clone(),
                _slot: slot,
                _peer: peer_slot,
            };
            if sender.send(Ok(counted)).await.is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(receiver)
}

impl Counted {
    /// The connection's time is up: closed, counted, logged.
    fn expired(&self, reason: &'static str) -> io::Error {
        self.metrics.connection_closed(reason);
        let peer = self.stream.peer_addr().ok();
        tracing::info!(?peer, reason, read = self.read, "connection closed by the server");
        io::Error::new(io::ErrorKind::TimedOut, reason)
    }
}

impl Connected for Counted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        // The timers are polled with the read, so whichever comes first
        // wakes the connection's task.
        if self.read < HANDSHAKE_BYTES && self.handshake.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(self.expired("handshake_timeout")));
        }
        if self.idle.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(self.expired("idle_timeout")));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        if read > 0 {
            self.read += read;
            let next = Instant::now() + self.idle_for;
            self.idle.as_mut().reset(next);
        }
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
