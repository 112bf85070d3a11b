//! The stand-in for GeoServer's REST API: the one thing the tests fake, because GeoServer itself
//! cannot be installed here.
//!
//! It answers `POST /geoserver/rest/reload` like GeoServer does (basic auth, 200 when done, 401 on
//! bad credentials) and, at the moment the reload starts, reads the data directory the way
//! GeoServer would and records which references do not resolve. That turns invariant 3 ("no half
//! state") into something a test can assert: every reload a slave asks for must see a catalog no
//! worse than the master's own. Fault controls (status, scripted statuses, down, delay) let tests
//! play an unhealthy GeoServer. Without a data directory it is a plain reload endpoint, for the
//! in-process tests of the reload task; every request it reads is kept for them (`requests`).
//!
//! A reload costs what GeoServer's costs: it takes `cost_per_object` for every catalog object
//! in the data directory (default 140 µs: GeoServer's parallel catalog loader reads 100,000
//! layers — about 200,000 objects — in 28 s, GeoServer PR 8370), plus `set_delay`. And, as in
//! GeoServer (`GeoServerImpl.reload` empties the catalog before it refills it), its OWS stand-in
//! (`/geoserver/ows`, `/geoserver/wms`…) answers 503 while a reload runs, 200 otherwise; every
//! reload's start and end are kept (`Reload::finished`), so a test or the benchmark can see when
//! a node was not serving.
//!
//! A plain std HTTP/1.1 server: one thread accepts, one short-lived thread per connection,
//! `Connection: close` on every answer.

use std::collections::{BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use super::references::catalog_problems;

/// What one catalog object costs a reload, by default (see the module documentation).
pub const DEFAULT_COST_PER_OBJECT: Duration = Duration::from_micros(140);

/// One reload request as the stand-in saw it.
#[derive(Clone, Debug)]
pub struct Reload {
    pub at: Instant,
    /// When it was answered (`None` while it runs, and for refused ones).
    pub finished: Option<Instant>,
    pub authorized: bool,
    /// The status code answered (200, 401, or the one forced by `answer_next` or `set_status`).
    pub status: u16,
    /// Unresolved references in the data directory when the reload started (empty if unauthorized).
    pub problems: Vec<String>,
}

/// One HTTP request as the stand-in read it, whatever it asked for and however it was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The `Authorization` header's value, as sent.
    pub authorization: Option<String>,
    /// The body as sent (up to 1 MiB).
    pub body: Vec<u8>,
}

struct Shared {
    /// Where reloads look for unresolved references; none: reloads record no problems.
    data_dir: Option<PathBuf>,
    expected_auth: String,
    requests: Mutex<Vec<Request>>,
    reloads: Mutex<Vec<Reload>>,
    resets: Mutex<Vec<Instant>>,
    status: AtomicU16,
    /// Statuses for the next authorized reloads, before `status` applies again.
    script: Mutex<VecDeque<u16>>,
    down: AtomicBool,
    delay: Mutex<Duration>,
    cost_per_object: Mutex<Duration>,
    /// Reloads running now: OWS requests get 503 meanwhile.
    reloading: std::sync::atomic::AtomicUsize,
    stop: AtomicBool,
    /// Per object file, the id the stand-in holds in memory (loaded at start and at every
    /// reload, changed by catalog REST calls: support/rest.rs).
    memory: Mutex<std::collections::BTreeMap<String, String>>,
    /// Catalog REST calls (method, path), in order.
    rest_calls: Mutex<Vec<(String, String)>>,
    /// POSTs give new objects ids of their own instead of the body's.
    new_ids: AtomicBool,
    /// `POST /rest/security/acl/catalog/reload` calls.
    security_reloads: std::sync::atomic::AtomicUsize,
}

pub struct StandInGeoServer {
    shared: Arc<Shared>,
    host: String,
    port: u16,
    acceptor: Option<JoinHandle<()>>,
}

/// Standard base64 with padding: just enough for `Authorization: Basic`.
pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl StandInGeoServer {
    /// Listens on a free port of 127.0.0.1 and serves until dropped.
    pub fn start(data_dir: &Path, user: &str, password: &str) -> StandInGeoServer {
        StandInGeoServer::start_on(0, Some(data_dir), user, password)
    }

    /// Like `start`, for tests of the reload client alone: reloads record no problems.
    pub fn start_without_data_dir(user: &str, password: &str) -> StandInGeoServer {
        StandInGeoServer::start_on(0, None, user, password)
    }

    /// Listens on this port of 127.0.0.1 (0: a free one), e.g. one a client has been refused on,
    /// to play "GeoServer comes up later".
    pub fn start_on(
        port: u16,
        data_dir: Option<&Path>,
        user: &str,
        password: &str,
    ) -> StandInGeoServer {
        StandInGeoServer::start_at("127.0.0.1", port, data_dir, user, password)
    }

    /// Like `start_on`, listening on `host` (an address of the test's namespace a node in
    /// another namespace reaches, support::netns).
    pub fn start_at(
        host: &str,
        port: u16,
        data_dir: Option<&Path>,
        user: &str,
        password: &str,
    ) -> StandInGeoServer {
        let listener = TcpListener::bind((host, port)).expect("bind stand-in GeoServer");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            data_dir: data_dir.map(Path::to_path_buf),
            expected_auth: format!("Basic {}", base64(format!("{user}:{password}").as_bytes())),
            requests: Mutex::new(vec![]),
            reloads: Mutex::new(vec![]),
            resets: Mutex::new(vec![]),
            status: AtomicU16::new(200),
            script: Mutex::new(VecDeque::new()),
            down: AtomicBool::new(false),
            delay: Mutex::new(Duration::ZERO),
            cost_per_object: Mutex::new(DEFAULT_COST_PER_OBJECT),
            reloading: std::sync::atomic::AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            memory: Mutex::new(
                data_dir
                    .map(super::references::catalog_ids)
                    .unwrap_or_default(),
            ),
            rest_calls: Mutex::new(vec![]),
            new_ids: AtomicBool::new(false),
            security_reloads: std::sync::atomic::AtomicUsize::new(0),
        });
        let s = shared.clone();
        let at = host.to_string();
        let acceptor = thread::spawn(move || accept_loop(listener, &at, port, s));
        StandInGeoServer {
            shared,
            host: host.into(),
            port,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The base URL to put in a node's `[geoserver] url`.
    pub fn url(&self) -> String {
        format!("http://{}:{}/geoserver", self.host, self.port)
    }

    /// Every request read so far, in arrival order, including refused and unknown ones.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// The requests that asked for a reload (`POST .../rest/reload`), leaving out others such as
    /// gscluster's start-up probe.
    pub fn reload_requests(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/rest/reload"))
            .collect()
    }

    pub fn reload_request_count(&self) -> usize {
        self.reload_requests().len()
    }

    pub fn reloads(&self) -> Vec<Reload> {
        self.shared.reloads.lock().unwrap().clone()
    }

    /// Reloads that were authorized and answered 200: the ones that really reloaded GeoServer.
    pub fn successful_reloads(&self) -> Vec<Reload> {
        self.reloads()
            .into_iter()
            .filter(|r| r.authorized && r.status == 200)
            .collect()
    }

    /// Times of `POST /rest/reset` requests (a cheaper alternative to reload for style bodies).
    pub fn resets(&self) -> Vec<Instant> {
        self.shared.resets.lock().unwrap().clone()
    }

    /// Answer authorized reloads with `code` (e.g. 500) until set back to 200.
    pub fn set_status(&self, code: u16) {
        self.shared.status.store(code, Ordering::SeqCst);
    }

    /// Answer the next authorized reloads with these statuses, in order, then with the
    /// `set_status` one again: e.g. `[500, 500]` for "fails twice, then works".
    pub fn answer_next(&self, statuses: &[u16]) {
        self.shared.script.lock().unwrap().extend(statuses);
    }

    /// Down: the port is closed (connections refused), as when GeoServer is stopped. Up again:
    /// the same port is bound again, so the node's configured URL works without a restart.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Reloads take this long before answering, like a big catalog does.
    pub fn set_delay(&self, delay: Duration) {
        *self.shared.delay.lock().unwrap() = delay;
    }

    /// What each catalog object of the data directory adds to a reload's time.
    pub fn set_cost_per_object(&self, cost: Duration) {
        *self.shared.cost_per_object.lock().unwrap() = cost;
    }

    /// Catalog REST calls so far, as "METHOD /rest/…" (reloads and resets not included).
    pub fn rest_calls(&self) -> Vec<String> {
        (self.shared.rest_calls.lock().unwrap().iter())
            .map(|(m, p)| format!("{m} {}", p.trim_start_matches("/geoserver")))
            .collect()
    }

    /// POSTs give new objects ids of their own, as a GeoServer that does not keep a body's
    /// `<id>` would.
    pub fn set_rest_new_ids(&self, on: bool) {
        self.shared.new_ids.store(on, Ordering::SeqCst);
    }

    /// `POST /rest/security/acl/catalog/reload` calls so far.
    pub fn security_reloads(&self) -> usize {
        self.shared.security_reloads.load(Ordering::SeqCst)
    }

    /// Whether what the stand-in holds in memory is what its data directory says: every object
    /// file with its id, and no other. `Err`: the differences.
    pub fn memory_matches_disk(&self) -> Result<(), String> {
        let dir = self
            .shared
            .data_dir
            .as_deref()
            .expect("a stand-in with a data directory");
        let disk = super::references::catalog_ids(dir);
        let memory = self.shared.memory.lock().unwrap().clone();
        if disk == memory {
            return Ok(());
        }
        let mut diff = vec![];
        for (path, id) in &disk {
            match memory.get(path) {
                None => diff.push(format!("{path} ({id}) is not in memory")),
                Some(m) if m != id => diff.push(format!("{path}: memory holds {m}, disk {id}")),
                _ => {}
            }
        }
        for path in memory.keys().filter(|p| !disk.contains_key(*p)) {
            diff.push(format!("{path} is in memory, not on disk"));
        }
        Err(diff.join("; "))
    }

    /// Whether its OWS stand-in answers now (no reload running).
    pub fn serving(&self) -> bool {
        self.shared.reloading.load(Ordering::SeqCst) == 0
    }
}

impl Drop for StandInGeoServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// Polls a non-blocking listener so the `down` and `stop` flags take effect within a few ms.
fn accept_loop(listener: TcpListener, host: &str, port: u16, shared: Arc<Shared>) {
    listener.set_nonblocking(true).unwrap();
    let mut listener = Some(listener);
    while !shared.stop.load(Ordering::SeqCst) {
        let down = shared.down.load(Ordering::SeqCst);
        if down {
            listener = None;
        } else if listener.is_none() {
            // The port may linger briefly; retry on the next round.
            if let Ok(l) = TcpListener::bind((host, port)) {
                l.set_nonblocking(true).unwrap();
                listener = Some(l);
            }
        }
        match listener.as_ref().map(|l| l.accept()) {
            Some(Ok((stream, _))) => {
                let s = shared.clone();
                thread::spawn(move || {
                    let _ = handle(stream, &s);
                });
            }
            _ => thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn read_request(stream: &TcpStream) -> std::io::Result<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut authorization = None;
    let mut length = 0usize;
    let mut chunked = false;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "authorization" => authorization = Some(value.trim().to_string()),
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                _ => {}
            }
        }
    }
    // The body must be read even where it is not used: closing a socket with unread input
    // sends a TCP RST, which can destroy the response before the client reads it.
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            let mut chunk = vec![0; n + 2]; // data + CRLF
            reader.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        body = vec![0; length.min(1 << 20)];
        reader.read_exact(&mut body)?;
    }
    Ok(Request {
        method,
        path,
        authorization,
        body,
    })
}

fn respond(mut stream: &TcpStream, status: u16, body: &str, extra: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn handle(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let req = read_request(&stream)?;
    shared.requests.lock().unwrap().push(req.clone());
    if shared.down.load(Ordering::SeqCst) {
        return Ok(()); // accepted just before going down: close without answering
    }
    let authorized = req.authorization.as_deref().is_some_and(|a| {
        let (scheme, rest) = a.split_once(' ').unwrap_or((a, ""));
        scheme.eq_ignore_ascii_case("basic")
            && format!("Basic {}", rest.trim()) == shared.expected_auth
    });
    let at = Instant::now();
    match (req.method.as_str(), req.path.trim_end_matches('/')) {
        (_, "/geoserver/rest/reload" | "/geoserver/rest/reset") if !authorized => {
            if req.path.ends_with("reload") {
                let r = Reload {
                    at,
                    finished: None,
                    authorized: false,
                    status: 401,
                    problems: vec![],
                };
                shared.reloads.lock().unwrap().push(r);
            }
            respond(
                &stream,
                401,
                "HTTP 401 Unauthorized",
                "WWW-Authenticate: Basic realm=\"GeoServer Realm\"\r\n",
            )
        }
        ("POST" | "PUT", "/geoserver/rest/reload") => {
            let problems = match &shared.data_dir {
                Some(dir) => catalog_problems(dir).into_iter().collect(),
                None => vec![],
            };
            let scripted = shared.script.lock().unwrap().pop_front();
            let status = scripted.unwrap_or_else(|| shared.status.load(Ordering::SeqCst));
            let index = {
                let mut reloads = shared.reloads.lock().unwrap();
                reloads.push(Reload {
                    at,
                    finished: None,
                    authorized: true,
                    status,
                    problems,
                });
                reloads.len() - 1
            };
            shared.reloading.fetch_add(1, Ordering::SeqCst);
            if let (Some(dir), 200) = (&shared.data_dir, status) {
                *shared.memory.lock().unwrap() = super::references::catalog_ids(dir);
            }
            let objects =
                (shared.data_dir.as_deref()).map_or(0, super::references::catalog_objects);
            let cost = *shared.cost_per_object.lock().unwrap() * objects as u32;
            let delay = *shared.delay.lock().unwrap() + cost;
            thread::sleep(delay); // simulated work, not synchronisation
            shared.reloads.lock().unwrap()[index].finished = Some(Instant::now());
            shared.reloading.fetch_sub(1, Ordering::SeqCst);
            respond(
                &stream,
                status,
                if status == 200 {
                    ""
                } else {
                    "java.lang.RuntimeException: catalog reload failed"
                },
                "",
            )
        }
        ("POST" | "PUT", "/geoserver/rest/reset") => {
            shared.resets.lock().unwrap().push(at);
            respond(&stream, 200, "", "")
        }
        (_, "/geoserver/rest/reload" | "/geoserver/rest/reset") => respond(&stream, 405, "", ""),
        (_, p) if p.starts_with("/geoserver/rest/") && !authorized => respond(
            &stream,
            401,
            "HTTP 401 Unauthorized",
            "WWW-Authenticate: Basic realm=\"GeoServer Realm\"\r\n",
        ),
        ("POST" | "PUT", "/geoserver/rest/security/acl/catalog/reload") => {
            shared.security_reloads.fetch_add(1, Ordering::SeqCst);
            respond(&stream, 200, "", "")
        }
        (m @ ("PUT" | "POST" | "DELETE"), p)
            if p.starts_with("/geoserver/rest/") && shared.data_dir.is_some() =>
        {
            let endpoint = req.path.trim_start_matches("/geoserver/rest");
            let dir = shared.data_dir.as_deref().unwrap();
            let new_ids = shared.new_ids.load(Ordering::SeqCst);
            let a = {
                let mut memory = shared.memory.lock().unwrap();
                super::rest::call(dir, &mut memory, new_ids, m, endpoint, &req.body)
            };
            (shared.rest_calls.lock().unwrap()).push((m.to_string(), req.path.clone()));
            respond(&stream, a.status, &a.body, "")
        }
        (_, p) if is_ows(p) => match shared.reloading.load(Ordering::SeqCst) {
            0 => respond(&stream, 200, "<ServiceExceptionReport/>", ""),
            _ => respond(&stream, 503, "GeoServer is reloading its catalog", ""),
        },
        _ => respond(&stream, 404, "not found", ""),
    }
}

/// Every reload `gs` recorded was authenticated and saw no unresolved reference beyond the
/// master's own (real data directories have a few): no reload of a half-applied catalog.
pub fn assert_reloads_consistent(gs: &StandInGeoServer, master_dir: &Path, who: &str) {
    assert!(
        gs.reloads().iter().all(|r| r.authorized),
        "{who}: unauthenticated reload"
    );
    let extra = problems_beyond_master(gs, master_dir, None);
    assert!(
        extra.is_empty(),
        "{who}: reload saw a half-applied catalog: {extra:?}"
    );
}

/// Unresolved references that reloads (those after `since`, or all) saw and that the master's
/// own data directory does not have.
pub fn problems_beyond_master(
    gs: &StandInGeoServer,
    master_dir: &Path,
    since: Option<Instant>,
) -> BTreeSet<String> {
    let allowed = catalog_problems(master_dir);
    gs.reloads()
        .iter()
        .filter(|r| since.is_none_or(|s| r.at > s))
        .flat_map(|r| r.problems.iter())
        .filter(|p| !allowed.contains(*p))
        .cloned()
        .collect()
}

/// An OWS request path (`/geoserver/ows`, `/geoserver/wms`, `/geoserver/ws/wfs`…).
fn is_ows(path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    ["ows", "wms", "wfs", "wcs", "wmts", "wps"]
        .iter()
        .any(|s| path.starts_with("/geoserver/") && path.ends_with(&format!("/{s}")))
}
