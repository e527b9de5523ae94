//! The Prometheus text format (version 0.0.4), written the same way by every r1 service
//! that serves `GET /metrics` (the coordinator, reward workers).

use std::fmt::{Display, Write};

/// The kind of a metric family, as its `# TYPE` line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A page being written: families, each a `# HELP` and `# TYPE` line and then its samples.
#[derive(Debug, Default)]
pub struct Page {
    out: String,
}

impl Page {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts family `name`.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {}\n# TYPE {name} {}", help.replace('\n', " "), kind.as_str());
        self
    }

    /// One sample `name{labels} value`; label values are escaped here.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                let sep = if i == 0 { "" } else { "," };
                let _ = write!(self.out, "{sep}{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// The page's text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// A label value with `\`, `"` and newlines escaped as the text format requires.
pub fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_families_and_escapes_labels() {
        let mut p = Page::new();
        p.family("r1_x_total", Kind::Counter, "Things.\nCounted.")
            .sample("r1_x_total", &[("run", "1"), ("name", "a \"b\"\\c\nd")], 3)
            .family("r1_up", Kind::Gauge, "Up.")
            .sample("r1_up", &[], 1.5);
        assert_eq!(
            p.finish(),
            "# HELP r1_x_total Things. Counted.\n# TYPE r1_x_total counter\n\
             r1_x_total{run=\"1\",name=\"a \\\"b\\\"\\\\c\\nd\"} 3\n\
             # HELP r1_up Up.\n# TYPE r1_up gauge\nr1_up 1.5\n"
        );
    }
}
