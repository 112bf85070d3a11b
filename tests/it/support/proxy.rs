//! A fault-injecting TCP proxy between nodes and brokers (`tc netem` is not available here):
//! every byte goes through it, counted, and it can add latency and jitter, cap the bandwidth,
//! reset every connection, refuse new ones, black-hole — accept and keep connections open but
//! deliver nothing until healed, as a dead route does (TCP then delivers what was held, in
//! order: bytes are delayed, never lost or altered, which no real network does either) — and
//! hold one direction only (half-open: the node's bytes reach the broker, the broker's do not
//! come back, as when a NAT or a firewall drops a connection's state on one side).
//!
//! Plain std threads: one accepts; per connection one thread reads each direction into a queue
//! of (when due, bytes) and one writes it out in order once due, at no more than the bandwidth
//! cap. Faults apply at once to open connections and new ones. Jitter never reorders bytes
//! (TCP does not either): a chunk is never due before the one ahead of it.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What the link does now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Added one way, to every chunk.
    pub latency: Duration,
    /// Up to this much more, at random per chunk.
    pub jitter: Duration,
    /// Bytes per second each way; `None`: as fast as loopback goes.
    pub bandwidth: Option<u64>,
    /// Accept and hold connections, deliver nothing until healed (what was sent meanwhile is
    /// delivered then; a peer that gives up first closes the connection itself).
    pub blackhole: bool,
    /// New connections are closed at once (the port still accepts: a refusing service).
    pub refuse: bool,
    /// Upstream → client delivers nothing until healed; client → upstream flows.
    pub half_open: bool,
}

struct Shared {
    faults: Mutex<Faults>,
    /// Bytes forwarded client → upstream and upstream → client.
    up: AtomicU64,
    down: AtomicU64,
    /// Open connections (both sockets, and how many of their two directions have ended), for
    /// resets; pruned as they end.
    open: Mutex<Vec<(TcpStream, TcpStream, Arc<AtomicU8>)>>,
    accepted: AtomicU64,
    stop: AtomicBool,
    seed: AtomicU64,
}

pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl Proxy {
    /// A proxy on a free port of 127.0.0.1 to `upstream` on 127.0.0.1.
    pub fn start(upstream: u16) -> Proxy {
        Proxy::start_at("127.0.0.1", upstream)
    }

    /// A proxy on a free port of `host` (e.g. an address nodes in other network namespaces
    /// reach, support::netns) to `upstream` on 127.0.0.1.
    pub fn start_at(host: &str, upstream: u16) -> Proxy {
        let listener = TcpListener::bind((host, 0)).expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            faults: Mutex::new(Faults::default()),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            open: Mutex::new(Vec::new()),
            accepted: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            seed: AtomicU64::new(0x9e37_79b9_7f4a_7c15 ^ u64::from(port)),
        });
        let s = shared.clone();
        let acceptor = thread::spawn(move || accept_loop(listener, upstream, s));
        Proxy {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Where clients connect.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn set(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap() = faults;
    }

    pub fn faults(&self) -> Faults {
        *self.shared.faults.lock().unwrap()
    }

    /// A clean link again.
    pub fn heal(&self) {
        self.set(Faults::default());
    }

    /// Reset every open connection (an RST both ways, as a crashed router or NAT does).
    pub fn reset_all(&self) {
        let open = std::mem::take(&mut *self.shared.open.lock().unwrap());
        for (a, b, _) in open {
            reset(&a);
            reset(&b);
        }
    }

    /// Bytes forwarded (client → upstream, upstream → client).
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.shared.up.load(Ordering::SeqCst),
            self.shared.down.load(Ordering::SeqCst),
        )
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.reset_all();
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// Close with an RST instead of a FIN: SO_LINGER with a zero timeout.
fn reset(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket this process owns, with a correctly sized value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let _ = s.shutdown(Shutdown::Both);
}

fn accept_loop(listener: TcpListener, upstream: u16, shared: Arc<Shared>) {
    listener.set_nonblocking(true).unwrap();
    while !shared.stop.load(Ordering::SeqCst) {
        let Ok((client, _)) = listener.accept() else {
            thread::sleep(Duration::from_millis(2));
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let _ = client.set_nonblocking(false);
        if shared.faults.lock().unwrap().refuse {
            reset(&client);
            continue;
        }
        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
            reset(&client);
            continue;
        };
        let _ = (client.set_nodelay(true), server.set_nodelay(true));
        let ended = Arc::new(AtomicU8::new(0));
        {
            let mut open = shared.open.lock().unwrap();
            open.retain(|(_, _, e)| e.load(Ordering::SeqCst) < 2);
            if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
                open.push((c, s, ended.clone()));
            }
        }
        pipe(&client, &server, &shared, true, ended.clone());
        pipe(&server, &client, &shared, false, ended);
    }
}

/// A chunk on its way, due at an instant.
type Queue = Arc<(Mutex<(VecDeque<(Instant, Vec<u8>)>, bool)>, Condvar)>;

/// Forward `from` → `to` through a delay queue: one reader thread, one writer thread.
fn pipe(from: &TcpStream, to: &TcpStream, shared: &Arc<Shared>, up: bool, ended: Arc<AtomicU8>) {
    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
    let queue: Queue = Arc::new((Mutex::new((VecDeque::new(), false)), Condvar::new()));
    let (q, s) = (queue.clone(), shared.clone());
    thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        let mut last_due = Instant::now();
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let f = *s.faults.lock().unwrap();
            let jitter = if f.jitter.is_zero() {
                Duration::ZERO
            } else {
                let r = next_random(&s.seed);
                f.jitter.mul_f64((r % 1000) as f64 / 1000.0)
            };
            let due = (Instant::now() + f.latency + jitter).max(last_due);
            last_due = due;
            let (lock, cv) = &*q;
            lock.lock().unwrap().0.push_back((due, buf[..n].to_vec()));
            cv.notify_one();
        }
        let (lock, cv) = &*q;
        lock.lock().unwrap().1 = true;
        cv.notify_one();
    });
    let s = shared.clone();
    thread::spawn(move || {
        let (lock, cv) = &*queue;
        loop {
            let next = {
                let mut g = lock.lock().unwrap();
                loop {
                    if let Some(front) = g.0.pop_front() {
                        break Some(front);
                    }
                    if g.1 {
                        break None;
                    }
                    g = cv.wait(g).unwrap();
                }
            };
            let Some((due, bytes)) = next else {
                let _ = to.shutdown(Shutdown::Write);
                ended.fetch_add(1, Ordering::SeqCst);
                return;
            };
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait); // the link's delay itself, not synchronisation
            }
            // A dead route (or, half-open, a dead way back): hold the bytes until it comes back
            // (or the proxy stops).
            let held = |f: Faults| f.blackhole || (f.half_open && !up);
            while held(*s.faults.lock().unwrap()) && !s.stop.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(10));
            }
            let f = *s.faults.lock().unwrap();
            if to.write_all(&bytes).is_err() {
                ended.fetch_add(1, Ordering::SeqCst);
                return;
            }
            let counter = if up { &s.up } else { &s.down };
            counter.fetch_add(bytes.len() as u64, Ordering::SeqCst);
            if let Some(bps) = f.bandwidth.filter(|b| *b > 0) {
                thread::sleep(Duration::from_secs_f64(bytes.len() as f64 / bps as f64));
            }
        }
    });
}

/// xorshift64*: cheap randomness for jitter, the same sequence for the same port.
fn next_random(seed: &AtomicU64) -> u64 {
    let mut x = seed.load(Ordering::Relaxed);
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    seed.store(x, Ordering::Relaxed);
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}
