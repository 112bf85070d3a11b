//! Running the `gscluster` binary as a command that exits by itself (check, status, export,
//! import, --version) and capturing what it printed. Daemons are `node::Node`.

use std::process::{Command, Output, Stdio};

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
