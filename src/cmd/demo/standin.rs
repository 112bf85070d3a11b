//! The demo's stand-in for each node's GeoServer: the two REST calls a node makes of it —
//! `GET /geoserver/rest/about/version` (is it there?) and `POST /geoserver/rest/reload` (with
//! basic auth, 401 without it) — answered at once, each reload told to the caller. A plain
//! std HTTP/1.1 server: one thread accepts, a short-lived thread per connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

/// `admin:geoserver`, as basic auth sends it: the demo's nodes use GeoServer's defaults.
const BASIC: &str = "Basic YWRtaW46Z2Vvc2VydmVy";

/// Serve on `listener` for ever, calling `reloaded` with each reload request (`true`: with
/// the right credentials).
pub fn serve(listener: TcpListener, reloaded: impl Fn(bool) + Clone + Send + 'static) {
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let reloaded = reloaded.clone();
            thread::spawn(move || {
                if let Some(ok) = answer(stream) {
                    reloaded(ok);
                }
            });
        }
    });
}

/// Answer one request; `Some(authorized)` when it was a reload.
fn answer(stream: TcpStream) -> Option<bool> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    let (method, path) = (words.next()?.to_string(), words.next()?.to_string());
    let (mut length, mut authorized) = (0usize, false);
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 || header.trim().is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap_or(0),
            "authorization" => authorized = value.trim() == BASIC,
            _ => {}
        }
    }
    let mut body = vec![0; length.min(1 << 20)];
    reader.read_exact(&mut body).ok()?;
    let (status, text, reload) = match (method.as_str(), path.as_str()) {
        ("POST", "/geoserver/rest/reload") if authorized => ("200 OK", "", Some(true)),
        ("POST", "/geoserver/rest/reload") => ("401 Unauthorized", "", Some(false)),
        ("GET", "/geoserver/rest/about/version") => (
            "200 OK",
            "<about><resource name=\"GeoServer\"><Version>demo stand-in</Version></resource></about>",
            None,
        ),
        _ => ("404 Not Found", "", None),
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    reload
}
