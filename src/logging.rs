//! Logging: env_logger on stderr, one line per event, plus a filter for the embedded broker.
//!
//! rumqttd logs through `tracing`, whose `log` bridge also turns every *span* it opens into a
//! log record — at ERROR level for its per-packet spans ("[>] incoming", "publish; topic=…"),
//! which would flood the log with false errors. Those span records are dropped here; rumqttd's
//! real events (for example "Read cursor start jumped", the sign that its log rolled over and
//! dropped messages) still come through at WARN.

use log::{Log, Metadata, Record};
use std::time::Duration;

/// Span names rumqttd opens with `error_span!` for every connection and packet.
const BROKER_SPANS: &[&str] = &["[>] incoming", "incoming_payload", "publish", "remote_link"];

struct Logger {
    inner: env_logger::Logger,
}

fn is_broker_span(record: &Record) -> bool {
    if !record.target().starts_with("rumqttd") {
        return false;
    }
    let msg = record.args().to_string();
    BROKER_SPANS.iter().any(|span| {
        msg == *span
            || msg
                .strip_prefix(span)
                .is_some_and(|rest| rest.starts_with(';'))
    })
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if self.inner.matches(record) && !is_broker_span(record) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush()
    }
}

/// Default filter of the daemon: `info`, with the broker (and the spans `tracing` reports
/// under its own name) at `warn`, and the filesystem watcher too: it logs a line at `info` for
/// every watched folder that is deleted ("unable to remove watch descriptor"), dozens for one
/// removed workspace.
pub const DAEMON: &str = "info,rumqttd=warn,tracing=warn,notify=warn";

/// Default filter of one-shot commands that print their own report (export, import): warnings.
pub const COMMAND: &str = "warn";

/// Install the logger: `RUST_LOG` decides, else `default`.
pub fn init(default: &str) {
    let inner =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
            .format_timestamp_millis()
            .build();
    let max = inner.filter();
    if log::set_boxed_logger(Box::new(Logger { inner })).is_ok() {
        log::set_max_level(max);
    }
}

/// "250 ms", "4 s", "2.5 s", "10 min" for log lines.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(60_000) {
        format!("{} min", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well_in_log_lines() {
        assert_eq!(duration(Duration::from_millis(250)), "250 ms");
        assert_eq!(duration(Duration::from_secs(4)), "4 s");
        assert_eq!(duration(Duration::from_millis(2500)), "2.5 s");
        assert_eq!(duration(Duration::from_secs(600)), "10 min");
    }
}
