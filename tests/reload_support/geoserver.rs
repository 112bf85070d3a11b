//! A stand-in for GeoServer's REST API: answers `POST /geoserver/rest/reload` with scripted
//! statuses and records every request it sees.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// The credentials the stand-in accepts; anything else gets 401.
pub const USER: &str = "admin";
pub const PASSWORD: &str = "geoserver";

/// One request as the stand-in saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
}

#[derive(Default)]
struct State {
    seen: Vec<SeenRequest>,
    /// Statuses for the next requests; 200 once empty.
    script: VecDeque<u16>,
    delay: Duration,
}

/// A running stand-in; its accept thread lives until the test process ends.
pub struct FakeGeoServer {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl FakeGeoServer {
    pub fn start() -> Self {
        Self::start_on(0)
    }

    /// Starts on a given port, e.g. one from [`free_port`] to play "GeoServer comes up later".
    pub fn start_on(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the stand-in GeoServer");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = Arc::clone(&shared);
                thread::spawn(move || answer(stream, &shared));
            }
        });
        FakeGeoServer { port, state }
    }

    /// The base URL to configure, like `[geoserver] url`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/geoserver", self.port)
    }

    /// Answers the next requests with these statuses, then 200 again.
    pub fn answer_next(&self, statuses: &[u16]) {
        self.state.lock().unwrap().script.extend(statuses);
    }

    /// Makes every answer take this long, like a reload of a big catalog.
    pub fn answer_after(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state.lock().unwrap().seen.clone()
    }

    pub fn request_count(&self) -> usize {
        self.state.lock().unwrap().seen.len()
    }
}

/// A port nothing listens on (until someone binds it again).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn answer(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut authorization = None;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line.trim().is_empty() => break,
            Ok(_) => {
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("authorization") {
                        authorization = Some(value.trim().to_string());
                    }
                }
            }
        }
    }
    let expected = format!("Basic {}", encoded_credentials());
    let (status, delay) = {
        let mut state = state.lock().unwrap();
        let status = if authorization.as_deref() != Some(expected.as_str()) {
            401
        } else if method != "POST" || path != "/geoserver/rest/reload" {
            404
        } else {
            state.script.pop_front().unwrap_or(200)
        };
        state.seen.push(SeenRequest {
            method,
            path,
            authorization,
        });
        (status, state.delay)
    };
    thread::sleep(delay);
    let body = match status {
        200 => "",
        401 => "HTTP Status 401 - Unauthorized",
        _ => "java.lang.RuntimeException: catalog reload failed",
    };
    let mut stream = &stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} Scripted\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// base64("admin:geoserver"), spelled out so the test does not reuse the code under test.
fn encoded_credentials() -> &'static str {
    assert_eq!((USER, PASSWORD), ("admin", "geoserver"));
    "YWRtaW46Z2Vvc2VydmVy"
}
