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
