use std::{cell::RefCell, sync::Arc};

use arc_swap::ArcSwap;
use hdrhistogram::Histogram;

/// Bucket bounds (milliseconds) of the exported Prometheus histograms: the
/// ones Istio uses for `istio_request_duration_milliseconds`, so existing
/// dashboards and alerts work unchanged.
pub const HISTOGRAM_BUCKETS_MS: &[f64] = &[
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Highest trackable value (µs): one hour. Larger values are clamped.
const MAX_US: u64 = 3_600_000_000;

fn new_hist() -> Histogram<u32> {
    // Two significant digits (1 % resolution) keeps a histogram at ~14 KiB;
    // three would be ~100 KiB per shard per listener, which an 8 MiB proxy
    // cannot afford.
    Histogram::new_with_bounds(1, MAX_US, 2).expect("static histogram bounds are valid")
}

/// The read side, shared with the admin thread.
#[derive(Debug)]
pub struct PublishedHistogram {
    hist: ArcSwap<Histogram<u32>>,
    sum_us: crate::Counter,
}

impl Default for PublishedHistogram {
    fn default() -> Self {
        PublishedHistogram {
            hist: ArcSwap::from_pointee(new_hist()),
            sum_us: Default::default(),
        }
    }
}

impl PublishedHistogram {
    /// The last published copy.
    pub fn load(&self) -> Arc<Histogram<u32>> {
        self.hist.load_full()
    }
    /// Exact sum of recorded values in µs (always current).
    pub fn sum_us(&self) -> u64 {
        self.sum_us.get()
    }
}

/// The write side, owned by one shard. Not `Sync`.
#[derive(Debug)]
pub struct LocalHistogram {
    local: RefCell<Histogram<u32>>,
    dirty: std::cell::Cell<bool>,
    shared: Arc<PublishedHistogram>,
}

impl LocalHistogram {
    pub fn new(shared: Arc<PublishedHistogram>) -> Self {
        LocalHistogram {
            local: RefCell::new(new_hist()),
            dirty: Default::default(),
            shared,
        }
    }

    /// Record one value in microseconds.
    #[inline]
    pub fn record_us(&self, us: u64) {
        let v = us.clamp(1, MAX_US);
        // saturating_record never fails for in-range values.
        self.local.borrow_mut().saturating_record(v);
        self.shared.sum_us.add(us);
        self.dirty.set(true);
    }

    /// Publish a copy for readers if anything changed since the last call.
    pub fn publish(&self) {
        if self.dirty.replace(false) {
            let copy = self.local.borrow().clone();
            self.shared.hist.store(Arc::new(copy));
        }
    }

    pub fn shared(&self) -> &Arc<PublishedHistogram> {
        &self.shared
    }
}

/// Merge several published histograms into one.
pub fn merge<'a>(parts: impl IntoIterator<Item = &'a PublishedHistogram>) -> (Histogram<u32>, u64) {
    let mut out = new_hist();
    let mut sum = 0;
    for p in parts {
        // Same bounds everywhere: add cannot fail.
        let _ = out.add(&*p.load());
        sum += p.sum_us();
    }
    (out, sum)
}
