use std::sync::Arc;

use super::*;
use crate::prometheus::Exposition;

#[derive(Default)]
struct Cells {
    hits: Counter,
}

#[test]
fn registry_merges_shards_per_key() {
    let reg: Registry<Cells> = Registry::default();
    let a: Arc<str> = "a".into();
    let b: Arc<str> = "b".into();
    reg.register(&a, 0).hits.add(2);
    reg.register(&a, 1).hits.add(3);
    reg.register(&b, 1).hits.inc();
    // Registering again returns the same cells.
    reg.register(&a, 0).hits.inc();
    let mut seen = Vec::new();
    reg.for_each_key(|k, cells| {
        seen.push((
            k.to_string(),
            cells.iter().map(|c| c.hits.get()).sum::<u64>(),
        ))
    });
    assert_eq!(seen, vec![("a".to_string(), 6), ("b".to_string(), 1)]);
}

#[test]
fn histogram_exposition_is_cumulative_with_istio_buckets() {
    let shared = Arc::new(PublishedHistogram::default());
    let local = LocalHistogram::new(shared.clone());
    local.record_us(300); // 0.3 ms -> le 0.5
    local.record_us(3_000); // 3 ms -> le 5
    local.record_us(40_000); // 40 ms -> le 50
    local.publish();
    let (h, sum) = histogram_merge([&*shared]);
    let mut e = Exposition::new();
    e.histogram_ms("x_ms", "help", &[("l", "v")], &h, sum);
    let text = e.finish();
    assert!(
        text.contains("x_ms_bucket{l=\"v\",le=\"0.5\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("x_ms_bucket{l=\"v\",le=\"1\"} 1\n"), "{text}");
    assert!(text.contains("x_ms_bucket{l=\"v\",le=\"5\"} 2\n"), "{text}");
    assert!(
        text.contains("x_ms_bucket{l=\"v\",le=\"25\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("x_ms_bucket{l=\"v\",le=\"50\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("x_ms_bucket{l=\"v\",le=\"+Inf\"} 3\n"),
        "{text}"
    );
    assert!(text.contains("x_ms_sum{l=\"v\"} 43.3\n"), "{text}");
    assert!(text.contains("x_ms_count{l=\"v\"} 3\n"), "{text}");
    assert_eq!(text.matches("# TYPE x_ms histogram").count(), 1);
}

#[test]
fn label_values_are_escaped() {
    let mut e = Exposition::new();
    e.counter("c", "h", &[("k", "a\"b\\c\nd")], 1);
    assert!(e.finish().contains("c{k=\"a\\\"b\\\\c\\nd\"} 1\n"));
}

#[test]
fn unpublished_values_are_not_visible() {
    let shared = Arc::new(PublishedHistogram::default());
    let local = LocalHistogram::new(shared.clone());
    local.record_us(10);
    assert_eq!(shared.load().len(), 0);
    local.publish();
    assert_eq!(shared.load().len(), 1);
}

#[test]
fn label_sets_are_interned_per_key_and_capped() {
    let reg: Arc<LabeledRegistry<Cells>> = Arc::default();
    let shard0: ShardLabeled<u32, Cells> = ShardLabeled::new(reg.clone(), 2);
    let shard1: ShardLabeled<u32, Cells> = ShardLabeled::new(reg.clone(), 2);
    fn lbl(v: &'static str) -> impl FnOnce() -> Vec<Box<str>> {
        move || vec![Box::<str>::from(v)]
    }
    let over = || vec![Box::<str>::from("unknown")];
    let mut built = 0;
    for k in [1, 1, 2, 1] {
        shard0.with(
            k,
            || {
                built += 1;
                vec![Box::<str>::from(format!("k{k}"))]
            },
            over,
            |c| c.hits.inc(),
        );
    }
    // Labels are built once per key.
    assert_eq!(built, 2);
    // Past the cap, keys fold into the overflow set and are counted.
    shard0.with(3, lbl("k3"), over, |c| c.hits.inc());
    shard0.with(4, lbl("k4"), over, |c| c.hits.inc());
    assert_eq!(shard0.len(), 2);
    assert_eq!(reg.overflow.total(), 2);
    // Another shard's cells for the same labels merge on scrape.
    shard1.with(9, lbl("k1"), over, |c| c.hits.add(10));
    let mut seen = Vec::new();
    reg.for_each_set(|labels, cells| {
        seen.push((
            labels[0].to_string(),
            cells.len(),
            cells.iter().map(|c| c.hits.get()).sum::<u64>(),
        ))
    });
    assert_eq!(
        seen,
        vec![
            ("k1".to_string(), 2, 13),
            ("k2".to_string(), 1, 1),
            ("unknown".to_string(), 1, 2),
        ]
    );
}

#[test]
fn fixed_histogram_renders_cumulative_buckets() {
    let h: FixedHistogram<3> = FixedHistogram::default();
    let bounds = [1, 10, 100];
    for v in [0, 1, 5, 10, 50, 1000] {
        h.record(&bounds, v, v);
    }
    let (b, count, sum) = merge_fixed(&[&h]);
    assert_eq!((b, count, sum), ([2, 2, 1], 6, 1066));
    let mut e = Exposition::new();
    e.histogram_fixed(
        "b",
        "help",
        &[("x", "y")],
        &["1", "10", "100"],
        &b,
        count,
        sum as f64,
    );
    let text = e.finish();
    let expect = "# HELP b help\n# TYPE b histogram\n\
        b_bucket{x=\"y\",le=\"1\"} 2\n\
        b_bucket{x=\"y\",le=\"10\"} 4\n\
        b_bucket{x=\"y\",le=\"100\"} 5\n\
        b_bucket{x=\"y\",le=\"+Inf\"} 6\n\
        b_sum{x=\"y\"} 1066\n\
        b_count{x=\"y\"} 6\n";
    assert_eq!(text, expect);
}
