//! A tap on the process's log: every event that passes the log filter is also offered, as a
//! [`LogRecord`], to whoever subscribed (catalogd's `/v1/agent/monitor` streams them). Nothing is
//! formatted while nobody listens, and a slow listener skips records instead of holding the
//! logger up (a bounded broadcast channel).

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// Records buffered per listener before it starts skipping.
const TAP_BUFFER: usize = 512;

/// One log event.
#[derive(Debug, Clone)]
pub struct LogRecord {
    pub time: SystemTime,
    pub level: Level,
    pub target: String,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

impl LogRecord {
    fn timestamp(&self) -> String {
        // A clock outside jiff's range (years 1..9999) has no RFC 3339 form.
        jiff::Timestamp::try_from(self.time)
            .map(|t| format!("{t:.3}"))
            .unwrap_or_default()
    }

    /// hclog's text form: `2026-01-02T03:04:05.678Z [INFO]  target: message: key=value`.
    pub fn text(&self) -> String {
        let level = match self.level {
            Level::ERROR => "[ERROR]",
            Level::WARN => "[WARN] ",
            Level::INFO => "[INFO] ",
            Level::DEBUG => "[DEBUG]",
            Level::TRACE => "[TRACE]",
        };
        let mut line = format!(
            "{} {level} {}: {}",
            self.timestamp(),
            self.target,
            self.message
        );
        if !self.fields.is_empty() {
            line.push(':');
            for (k, v) in &self.fields {
                line.push_str(&format!(" {k}={v}"));
            }
        }
        line
    }

    /// hclog's JSON form (`@level`, `@message`, `@module`, `@timestamp`, then the fields).
    pub fn json(&self) -> String {
        let mut obj = serde_json::Map::new();
        let mut put = |k: &str, v: String| {
            obj.insert(k.to_string(), serde_json::Value::String(v));
        };
        put("@level", self.level.as_str().to_ascii_lowercase());
        put("@message", self.message.clone());
        put("@module", self.target.clone());
        put("@timestamp", self.timestamp());
        for (k, v) in &self.fields {
            put(k, v.clone());
        }
        serde_json::Value::Object(obj).to_string()
    }
}

/// Handle for subscribing to the process's log.
#[derive(Clone)]
pub struct LogTap {
    tx: broadcast::Sender<Arc<LogRecord>>,
}

impl std::fmt::Debug for LogTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogTap")
            .field("listeners", &self.tx.receiver_count())
            .finish()
    }
}

impl Default for LogTap {
    fn default() -> Self {
        LogTap {
            tx: broadcast::channel(TAP_BUFFER).0,
        }
    }
}

impl LogTap {
    /// Receives every record logged from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogRecord>> {
        self.tx.subscribe()
    }

    /// The layer that feeds this tap.
    pub fn layer(&self) -> TapLayer {
        TapLayer {
            tx: self.tx.clone(),
        }
    }
}

/// The `tracing` layer behind a [`LogTap`].
pub struct TapLayer {
    tx: broadcast::Sender<Arc<LogRecord>>,
}

#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields
                .push((field.name().to_string(), format!("{value:?}")));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.fields
                .push((field.name().to_string(), value.to_string()));
        }
    }
}

impl<S: Subscriber> Layer<S> for TapLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let record = LogRecord {
            time: SystemTime::now(),
            level: *event.metadata().level(),
            target: event.metadata().target().to_string(),
            message: fields.message,
            fields: fields.fields,
        };
        // No listener left between the check and now: nothing to do.
        let _ = self.tx.send(Arc::new(record));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_render_as_hclog_does() {
        let r = LogRecord {
            time: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_767_225_600_123),
            level: Level::INFO,
            target: "catalogd::core".into(),
            message: "serving \"HTTP\"".into(),
            fields: vec![("addr".into(), "127.0.0.1:8500".into())],
        };
        assert_eq!(
            r.text(),
            "2026-01-01T00:00:00.123Z [INFO]  catalogd::core: serving \"HTTP\": addr=127.0.0.1:8500"
        );
        assert_eq!(
            r.json(),
            r#"{"@level":"info","@message":"serving \"HTTP\"","@module":"catalogd::core","@timestamp":"2026-01-01T00:00:00.123Z","addr":"127.0.0.1:8500"}"#
        );
    }
}
