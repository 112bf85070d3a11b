//! Progress of a long export or import on a terminal: one line rewritten in place on stderr, at
//! most ten times a second. Off when stderr is not a terminal (scripts, logs, tests).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    on: bool,
    label: String,
    last: Option<Instant>,
    shown: bool,
}

impl Progress {
    pub fn new(label: &str) -> Progress {
        Progress {
            on: std::io::stderr().is_terminal(),
            label: label.to_string(),
            last: None,
            shown: false,
        }
    }

    /// `done` of `total` items (files).
    pub fn update(&mut self, done: usize, total: usize) {
        self.show(&format!("{done}/{total} files"), done == total);
    }

    /// A phase without a count, e.g. waiting: the time spent so far.
    pub fn waiting(&mut self, since: Instant) {
        self.show(&format!("{} s", since.elapsed().as_secs()), false);
    }

    fn show(&mut self, what: &str, force: bool) {
        if !self.on {
            return;
        }
        let now = Instant::now();
        if !force
            && self
                .last
                .is_some_and(|t| now - t < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(now);
        self.shown = true;
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{}: {what}", self.label);
        let _ = err.flush();
    }

    /// End the line, so that what is printed next starts on its own line.
    pub fn finish(&mut self) {
        if self.shown {
            eprintln!();
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
