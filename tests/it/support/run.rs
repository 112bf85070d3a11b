//! Running the `gscluster` binary as a command that exits by itself (check, status, export,
//! import, --version) and capturing what it printed, and asking a running node's metrics
//! listener over HTTP. Daemons are `node::Node`.

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The binary Cargo built with the tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_gscluster");

/// The binary with a clean environment for what it reads: no inherited config path, `RUST_LOG`
/// as given, no standard input.
pub fn command(rust_log: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("GSCLUSTER_CONFIG")
        .env("RUST_LOG", rust_log)
        .stdin(Stdio::null());
    cmd
}

/// What a finished command said.
#[derive(Debug)]
pub struct Ran {
    /// The exit code; -1 when a signal ended it.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Ran {
    fn from(out: Output) -> Ran {
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Run the binary with `args` to its end.
pub fn run(args: &[&str], rust_log: &str) -> Ran {
    command(rust_log)
        .args(args)
        .output()
        .expect("run gscluster")
        .into()
}

/// GET `path` from 127.0.0.1:`port`: (status code, body).
pub fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    // Bodies here are small: axum sends them with a length, or chunked in one chunk.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((len, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out += &tail[..n];
            rest = &tail[n + 2..];
        }
        out
    } else {
        body.to_string()
    };
    Ok((code, body))
}
