//! Prometheus' text exposition format 0.0.4 (what Consul's `?format=prometheus` and every
//! Prometheus server read) for values taken at scrape time: a daemon reads its counters and
//! state, adds each as a counter or gauge, and renders. The format itself (escaping, number
//! formatting, ordering of `# HELP`/`# TYPE`) is the `prometheus` crate's encoder.

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder as _, TextEncoder};

/// The content type of [`Exposition::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Metric families collected for one scrape.
#[derive(Default)]
pub struct Exposition {
    families: Vec<MetricFamily>,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// A counter (its name should end in `_total`).
    pub fn counter(&mut self, name: &str, help: &str, value: f64) -> &mut Self {
        self.family(name, help, MetricType::COUNTER, [(None, value)])
    }

    /// A gauge.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) -> &mut Self {
        self.family(name, help, MetricType::GAUGE, [(None, value)])
    }

    /// A gauge with one label: a sample per `(label value, value)`.
    pub fn gauges_by<'a>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        samples: impl IntoIterator<Item = (&'a str, f64)>,
    ) -> &mut Self {
        let samples = samples
            .into_iter()
            .map(|(v, value)| (Some((label, v)), value));
        self.family(name, help, MetricType::GAUGE, samples)
    }

    fn family<'a>(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        samples: impl IntoIterator<Item = (Option<(&'a str, &'a str)>, f64)>,
    ) -> &mut Self {
        let mut family = MetricFamily::default();
        family.set_name(name.to_string());
        family.set_help(help.to_string());
        family.set_field_type(kind);
        for (label, value) in samples {
            let mut metric = Metric::default();
            if let Some((label, label_value)) = label {
                let mut pair = LabelPair::default();
                pair.set_name(label.to_string());
                pair.set_value(label_value.to_string());
                metric.set_label(vec![pair]);
            }
            match kind {
                MetricType::COUNTER => {
                    let mut c = Counter::default();
                    c.set_value(value);
                    metric.set_counter(c);
                }
                _ => {
                    let mut g = Gauge::default();
                    g.set_value(value);
                    metric.set_gauge(g);
                }
            }
            family.mut_metric().push(metric);
        }
        self.families.push(family);
        self
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = Vec::with_capacity(256 * self.families.len());
        // The encoder fails only on a family without samples or a writer that fails; neither
        // can happen here (every family gets its samples, a Vec does not fail).
        match TextEncoder::new().encode(&self.families, &mut out) {
            Ok(()) => String::from_utf8(out).unwrap_or_default(),
            Err(e) => format!("# metrics could not be encoded: {e}\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_labelled_gauges_in_the_text_format() {
        let mut e = Exposition::new();
        e.counter("x_requests_total", "Requests served.", 3.0)
            .gauge("x_up", "Whether it is up.", 1.0)
            .gauges_by(
                "x_checks",
                "Checks by status.",
                "status",
                [("passing", 2.0), ("critical", 0.0)],
            );
        assert_eq!(
            e.render(),
            "# HELP x_requests_total Requests served.\n# TYPE x_requests_total counter\n\
             x_requests_total 3\n\
             # HELP x_up Whether it is up.\n# TYPE x_up gauge\nx_up 1\n\
             # HELP x_checks Checks by status.\n# TYPE x_checks gauge\n\
             x_checks{status=\"passing\"} 2\nx_checks{status=\"critical\"} 0\n"
        );
    }

    #[test]
    fn escapes_help_and_label_values() {
        let mut e = Exposition::new();
        e.gauges_by("y", "a \\ b\nc", "k", [("q\"\n\\", 1.5)]);
        assert_eq!(
            e.render(),
            "# HELP y a \\\\ b\\nc\n# TYPE y gauge\ny{k=\"q\\\"\\n\\\\\"} 1.5\n"
        );
    }
}
