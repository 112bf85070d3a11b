//! Captures log lines so tests can check what an operator would read.

use std::sync::{Mutex, Once};

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());
static INIT: Once = Once::new();

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        let line = format!("{} {}", record.level(), record.args());
        eprintln!("{line}");
        LINES.lock().unwrap().push(line);
    }

    fn flush(&self) {}
}

/// Installs the capture once per test binary; call it at the start of every test that reads logs.
/// A process has one `log` logger, so a test binary that uses this must install no other.
pub fn capture() {
    INIT.call_once(|| {
        log::set_logger(&Capture).expect("no other logger in the test binary");
        log::set_max_level(log::LevelFilter::Debug);
    });
}

/// True when some captured line contains every one of `parts` (tests run in parallel, so pass
/// something unique to the test, such as its server's port).
pub fn logged(parts: &[&str]) -> bool {
    LINES
        .lock()
        .unwrap()
        .iter()
        .any(|line| parts.iter().all(|p| line.contains(p)))
}
