//! Prometheus text exposition (format 0.0.4) writer.

use std::fmt::Write;

use hdrhistogram::Histogram;

use crate::HISTOGRAM_BUCKETS_MS;

/// Accumulates an exposition. Writes `# HELP`/`# TYPE` once per family.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
    last_family: String,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    fn header(&mut self, name: &str, kind: &str, help: &str) {
        if self.last_family != name {
            let _ = writeln!(self.out, "# HELP {name} {help}");
            let _ = writeln!(self.out, "# TYPE {name} {kind}");
            self.last_family.clear();
            self.last_family.push_str(name);
        }
    }

    fn labels(&mut self, labels: &[(&str, &str)]) {
        if labels.is_empty() {
            return;
        }
        self.out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, "{k}=\"");
            for c in v.chars() {
                match c {
                    '\\' => self.out.push_str("\\\\"),
                    '"' => self.out.push_str("\\\""),
                    '\n' => self.out.push_str("\\n"),
                    c => self.out.push(c),
                }
            }
            self.out.push('"');
        }
        self.out.push('}');
    }

    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: u64) {
        self.header(name, "counter", help);
        self.out.push_str(name);
        self.labels(labels);
        let _ = writeln!(self.out, " {value}");
    }

    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: i64) {
        self.header(name, "gauge", help);
        self.out.push_str(name);
        self.labels(labels);
        let _ = writeln!(self.out, " {value}");
    }

    /// A histogram in milliseconds with Istio's buckets, from an HDR
    /// histogram recorded in microseconds. `sum_us` is the exact sum.
    pub fn histogram_ms(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        hist: &Histogram<u32>,
        sum_us: u64,
    ) {
        self.header(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        let mut iter = hist.iter_recorded().peekable();
        for le in HISTOGRAM_BUCKETS_MS {
            let bound_us = (le * 1000.0) as u64;
            while let Some(v) = iter.peek() {
                // A value belongs to a bucket when its HDR bucket's highest
                // equivalent value is within the bound.
                if hist.highest_equivalent(v.value_iterated_to()) <= bound_us {
                    cumulative += u64::from(v.count_at_value());
                    iter.next();
                } else {
                    break;
                }
            }
            let le_s = fmt_le(*le);
            self.bucket_line(&bucket, labels, &le_s, cumulative);
        }
        self.bucket_line(&bucket, labels, "+Inf", hist.len());
        let _ = write!(self.out, "{name}_sum");
        self.labels(labels);
        let _ = writeln!(self.out, " {}", sum_us as f64 / 1000.0);
        let _ = write!(self.out, "{name}_count");
        self.labels(labels);
        let _ = writeln!(self.out, " {}", hist.len());
    }

    /// A histogram from non-cumulative bucket counts (`buckets[i]` counts
    /// values `<= bounds[i]` and above the previous bound); `count` includes
    /// values above the last bound. `sum` is written as given.
    #[allow(clippy::too_many_arguments)] // one per part of the family
    pub fn histogram_fixed(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        bounds: &[&str],
        buckets: &[u64],
        count: u64,
        sum: f64,
    ) {
        self.header(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        for (le, n) in bounds.iter().zip(buckets) {
            cumulative += n;
            self.bucket_line(&bucket, labels, le, cumulative);
        }
        self.bucket_line(&bucket, labels, "+Inf", count);
        let _ = write!(self.out, "{name}_sum");
        self.labels(labels);
        let _ = writeln!(self.out, " {sum}");
        let _ = write!(self.out, "{name}_count");
        self.labels(labels);
        let _ = writeln!(self.out, " {count}");
    }

    fn bucket_line(&mut self, bucket: &str, labels: &[(&str, &str)], le: &str, count: u64) {
        let mut with_le: Vec<(&str, &str)> = Vec::with_capacity(labels.len() + 1);
        with_le.extend_from_slice(labels);
        with_le.push(("le", le));
        self.out.push_str(bucket);
        self.labels(&with_le);
        let _ = writeln!(self.out, " {count}");
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A bucket bound as Prometheus clients write it (`0.5`, `25`, `1e+06`).
pub fn fmt_le(le: f64) -> String {
    if le.fract() == 0.0 {
        format!("{}", le as u64)
    } else {
        format!("{le}")
    }
}
