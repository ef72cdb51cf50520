//! Prometheus' text exposition format 0.0.4 (what Consul's `?format=prometheus` and every
//! Prometheus server read) for values taken at scrape time: a daemon reads its counters and
//! state, adds each as a counter or gauge, and renders. The format itself (escaping, number
//! formatting, ordering of `# HELP`/`# TYPE`) is the `prometheus` crate's encoder.
//!
//! A family is one name with one sample per label set: unlabelled ([`Exposition::counter`],
//! [`Exposition::gauge`]), one label ([`Exposition::gauges_by`]) or any labels
//! ([`Exposition::counters`], [`Exposition::gauges`], each sample with its `(name, value)`
//! pairs). A labelled family with no samples is left out of the text (Prometheus' encoder
//! refuses an empty family, and a family without series says nothing).

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder as _, TextEncoder};

/// The labels of an unlabelled sample.
const NO_LABELS: [(&str, &str); 0] = [];

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
        self.family(name, help, MetricType::COUNTER, [(NO_LABELS, value)])
    }

    /// A gauge.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) -> &mut Self {
        self.family(name, help, MetricType::GAUGE, [(NO_LABELS, value)])
    }

    /// A gauge with one label: a sample per `(label value, value)`.
    pub fn gauges_by<'a>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        samples: impl IntoIterator<Item = (&'a str, f64)>,
    ) -> &mut Self {
        let samples = samples.into_iter().map(|(v, value)| ([(label, v)], value));
        self.family(name, help, MetricType::GAUGE, samples)
    }

    /// A counter family with labels: a sample per `(labels, value)`, the labels as
    /// `(name, value)` pairs in the order they are to be written.
    pub fn counters<'a, L: AsRef<[(&'a str, &'a str)]>>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, f64)>,
    ) -> &mut Self {
        self.family(name, help, MetricType::COUNTER, samples)
    }

    /// A gauge family with labels: a sample per `(labels, value)` (see [`Self::counters`]).
    pub fn gauges<'a, L: AsRef<[(&'a str, &'a str)]>>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, f64)>,
    ) -> &mut Self {
        self.family(name, help, MetricType::GAUGE, samples)
    }

    fn family<'a, L: AsRef<[(&'a str, &'a str)]>>(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        samples: impl IntoIterator<Item = (L, f64)>,
    ) -> &mut Self {
        let mut family = MetricFamily::default();
        family.set_name(name.to_string());
        family.set_help(help.to_string());
        family.set_field_type(kind);
        for (labels, value) in samples {
            let mut metric = Metric::default();
            let pairs: Vec<LabelPair> = labels
                .as_ref()
                .iter()
                .map(|(label, label_value)| {
                    let mut pair = LabelPair::default();
                    pair.set_name(label.to_string());
                    pair.set_value(label_value.to_string());
                    pair
                })
                .collect();
            if !pairs.is_empty() {
                metric.set_label(pairs);
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
        if !family.get_metric().is_empty() {
            self.families.push(family);
        }
        self
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = Vec::with_capacity(256 * self.families.len());
        // The encoder fails only on a family without samples or a writer that fails; neither
        // can happen here (empty families are not kept, a Vec does not fail).
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
    fn renders_families_with_several_labels() {
        let mut e = Exposition::new();
        e.counters(
            "t_cpu_seconds_total",
            "CPU used.",
            [
                (
                    [("app", "/shop/web"), ("task", "web.1"), ("node", "n1")],
                    1.25,
                ),
                ([("app", "/shop/db"), ("task", "db.1"), ("node", "n1")], 0.0),
            ],
        )
        .gauges(
            "t_tasks",
            "Tasks.",
            [([("node", "n1"), ("state", "up")], 2.0)],
        )
        .gauges(
            "t_nothing",
            "No samples: no family.",
            Vec::<([(&str, &str); 1], f64)>::new(),
        )
        .gauges("t_plain", "No labels.", [(Vec::<(&str, &str)>::new(), 7.0)]);
        assert_eq!(
            e.render(),
            "# HELP t_cpu_seconds_total CPU used.\n# TYPE t_cpu_seconds_total counter\n\
             t_cpu_seconds_total{app=\"/shop/web\",task=\"web.1\",node=\"n1\"} 1.25\n\
             t_cpu_seconds_total{app=\"/shop/db\",task=\"db.1\",node=\"n1\"} 0\n\
             # HELP t_tasks Tasks.\n# TYPE t_tasks gauge\nt_tasks{node=\"n1\",state=\"up\"} 2\n\
             # HELP t_plain No labels.\n# TYPE t_plain gauge\nt_plain 7\n"
        );
        let mut empty = Exposition::new();
        empty.gauges_by("x", "none", "k", []);
        assert_eq!(
            empty.render(),
            "",
            "an empty family is left out, not an error"
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
