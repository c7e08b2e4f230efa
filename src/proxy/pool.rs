//! Sluice's own upstream keep-alive pool: idle connections per worker thread, newest first, in a
//! plain list. Releasing a connection is a push: no task watches it, no lock is taken, no timer
//! is set (Pingora's pool spends all three on every release). A connection is checked when it
//! is taken instead: past its idle deadline, closed by the upstream, or holding bytes nobody
//! asked for, it is dropped and the next one tried. The proxy loop retries a request that failed
//! on a reused connection once on a fresh one, before any byte of the answer reached the client.
//! Each release also looks at the oldest connections kept for that upstream and drops those
//! that expired or died, so connections an upstream closed do not pile up under a busy newest
//! one. (While no request reaches an upstream, its dead connections wait for the next one: at
//! most the pool's size, sockets in `CLOSE_WAIT`.)

use pingora::protocols::Stream;
use pingora::upstreams::peer::{HttpPeer, Peer};
use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, ReadBuf};

use crate::metrics::METRICS;

/// Idle connections one worker thread keeps, to all upstreams together: the server's
/// `upstream_keepalive_pool_size` shared among its threads (`set_capacity`).
static MAX_IDLE: AtomicUsize = AtomicUsize::new(1024);

/// How many of the oldest connections of an upstream each release checks.
const SWEEP: usize = 2;

/// Sets each thread's share of `total` idle connections over `threads` threads.
pub fn set_capacity(total: usize, threads: usize) {
    MAX_IDLE.store((total / threads.max(1)).max(16), Ordering::Relaxed);
}

struct Idle {
    stream: Stream,
    address: pingora::protocols::l4::socket::SocketAddr,
    until: Instant,
}

#[derive(Default)]
struct Pool {
    by_peer: HashMap<u64, Vec<Idle>>,
    held: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::default();
}

static REUSED: LazyLock<prometheus::IntCounter> =
    LazyLock::new(|| METRICS.upstream_pool.with_label_values(&["reused"]));
static NEW: LazyLock<prometheus::IntCounter> =
    LazyLock::new(|| METRICS.upstream_pool.with_label_values(&["new"]));
static STALE: LazyLock<prometheus::IntCounter> =
    LazyLock::new(|| METRICS.upstream_pool.with_label_values(&["stale"]));

/// A live idle connection to `peer`, the most recently released first.
pub fn take(peer: &HttpPeer) -> Option<Stream> {
    let now = Instant::now();
    let taken = POOL.with_borrow_mut(|pool| {
        let list = pool.by_peer.get_mut(&peer.reuse_hash())?;
        while let Some(mut idle) = list.pop() {
            pool.held -= 1;
            if idle.until > now && idle.address == *peer.address() && quiet(&mut idle.stream) {
                return Some(idle.stream);
            }
            STALE.inc();
        }
        None
    });
    match &taken {
        Some(_) => REUSED.inc(),
        None => NEW.inc(),
    }
    taken
}

/// Keeps `stream` for the next request to `peer`, for the peer's idle timeout (60 s without;
/// none when it is zero).
pub fn put(peer: &HttpPeer, stream: Stream) {
    let idle = peer.idle_timeout().unwrap_or(Duration::from_secs(60));
    if idle.is_zero() {
        return;
    }
    let now = Instant::now();
    let key = peer.reuse_hash();
    let idle = Idle {
        stream,
        address: peer.address().clone(),
        until: now + idle,
    };
    POOL.with_borrow_mut(|pool| {
        let dropped = pool
            .by_peer
            .get_mut(&key)
            .map_or(0, |list| sweep(list, now));
        pool.held -= dropped;
        if pool.held >= MAX_IDLE.load(Ordering::Relaxed) && !evict_oldest(pool) {
            return;
        }
        pool.held += 1;
        pool.by_peer.entry(key).or_default().push(idle);
    });
}

/// Drops the expired or dead among the `SWEEP` oldest connections of `list`; how many.
fn sweep(list: &mut Vec<Idle>, now: Instant) -> usize {
    let mut dropped = 0;
    let mut i = 0;
    for _ in 0..SWEEP.min(list.len()) {
        if list[i].until > now && quiet(&mut list[i].stream) {
            i += 1;
        } else {
            list.remove(i);
            dropped += 1;
        }
    }
    STALE.inc_by(dropped as u64);
    dropped
}

/// Drops the oldest idle connection of the longest list (a full pool is rare: a burst to many
/// upstreams); false when there is none.
fn evict_oldest(pool: &mut Pool) -> bool {
    let Some(list) = pool.by_peer.values_mut().max_by_key(|l| l.len()) else {
        return false;
    };
    if list.is_empty() {
        return false;
    }
    list.remove(0);
    pool.held -= 1;
    true
}

/// Whether a read on the idle `stream` would wait: nothing arrived and the upstream did not
/// close it. A readable idle connection is either closed or holds bytes no request asked for;
/// both are dropped. The read registers no waker that matters: the next real read sets its own.
fn quiet(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    matches!(Pin::new(stream).poll_read(&mut cx, &mut buf), Poll::Pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    fn stream(client: TcpStream) -> Stream {
        Box::new(pingora::protocols::l4::stream::Stream::from(client))
    }

    #[tokio::test]
    async fn newest_first_and_closed_or_chatty_connections_are_dropped() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = HttpPeer::new(addr, false, String::new());
        let (a, _a_server) = pair(&listener).await;
        let (b, mut b_server) = pair(&listener).await;
        let (c, c_server) = pair(&listener).await;
        // c's upstream closes it and b's sends bytes nobody asked for, while they are idle.
        drop(c_server);
        b_server.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        b.readable().await.unwrap();
        c.readable().await.unwrap();
        let a = stream(a);
        let a_id = a.id();
        put(&peer, a);
        put(&peer, stream(b));
        put(&peer, stream(c));
        let taken = take(&peer).expect("a is alive");
        assert_eq!(taken.id(), a_id);
        assert!(take(&peer).is_none(), "nothing else is left");
        // Another peer's connections are not this one's.
        let other = HttpPeer::new(addr, true, "other".into());
        put(&peer, taken);
        assert!(take(&other).is_none());
        assert!(take(&peer).is_some());
    }

    fn kept(peer: &HttpPeer) -> usize {
        POOL.with_borrow(|pool| pool.by_peer.get(&peer.reuse_hash()).map_or(0, Vec::len))
    }

    #[tokio::test]
    async fn an_expired_connection_is_not_reused_and_none_is_kept_without_a_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peer = HttpPeer::new(listener.local_addr().unwrap(), false, String::new());
        peer.options.idle_timeout = Some(Duration::from_nanos(1));
        let (a, _a_server) = pair(&listener).await;
        put(&peer, stream(a));
        assert_eq!(kept(&peer), 1);
        assert!(take(&peer).is_none());
        peer.options.idle_timeout = Some(Duration::ZERO);
        let (b, _b_server) = pair(&listener).await;
        put(&peer, stream(b));
        assert_eq!(kept(&peer), 0);
    }

    /// Connections that die under a busy newest one are dropped by the next releases, not
    /// kept open until they would be taken.
    #[tokio::test]
    async fn releases_drop_the_oldest_dead_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = HttpPeer::new(listener.local_addr().unwrap(), false, String::new());
        let (old, old_server) = pair(&listener).await;
        let (live, _live_server) = pair(&listener).await;
        drop(old_server);
        old.readable().await.unwrap();
        put(&peer, stream(old));
        assert_eq!(kept(&peer), 1);
        put(&peer, stream(live));
        assert_eq!(kept(&peer), 1, "the next release dropped the dead one");
        assert!(take(&peer).is_some());
    }
}
