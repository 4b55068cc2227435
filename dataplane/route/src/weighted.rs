//! Weighted clusters (Envoy's `weighted_clusters`): a route's traffic split
//! in proportion to integer weights, e.g. a 90/10 canary.
//!
//! Built once with the cumulative weights; a pick maps one 64-bit random
//! number onto `[0, total)` (multiply-shift, no division) and binary-searches
//! the cumulative table: O(log n), no allocation. A zero weight is allowed
//! and never picked; the total must be positive.

use std::sync::Arc;

/// A cluster of the snapshot, by name and index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRef {
    /// For metrics and logs (shared with the snapshot's cluster).
    pub name: Arc<str>,
    /// Index into the snapshot's cluster list.
    pub index: u32,
}

/// One entry of a weighted split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedCluster {
    pub cluster: ClusterRef,
    pub weight: u32,
}

/// A validated weighted split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedClusters {
    clusters: Box<[WeightedCluster]>,
    /// `cumulative[i]` = sum of the weights of `clusters[..=i]`.
    cumulative: Box<[u64]>,
    total: u64,
}

impl WeightedClusters {
    /// Rejects an empty list, a total weight of 0 and a total above
    /// `u32::MAX` (Envoy's limits).
    pub fn new(clusters: Vec<WeightedCluster>) -> Result<WeightedClusters, String> {
        if clusters.is_empty() {
            return Err("must not be empty".into());
        }
        let mut total = 0u64;
        let cumulative = clusters
            .iter()
            .map(|c| {
                total += u64::from(c.weight);
                total
            })
            .collect();
        if total == 0 {
            return Err("the weights must add up to more than 0".into());
        }
        if total > u64::from(u32::MAX) {
            return Err(format!(
                "the sum of the weights must not exceed {}",
                u32::MAX
            ));
        }
        Ok(WeightedClusters {
            clusters: clusters.into(),
            cumulative,
            total,
        })
    }

    pub fn clusters(&self) -> &[WeightedCluster] {
        &self.clusters
    }

    pub fn total_weight(&self) -> u64 {
        self.total
    }

    /// The cluster for one uniformly distributed 64-bit `random` value:
    /// cluster `i` is picked with probability `weight[i] / total`.
    #[inline]
    pub fn pick(&self, random: u64) -> &ClusterRef {
        // floor(random * total / 2^64) is uniform over [0, total) (bias
        // below total / 2^64).
        let r = ((u128::from(random) * u128::from(self.total)) >> 64) as u64;
        // The first entry whose cumulative weight exceeds r; zero-weight
        // entries share their predecessor's sum and are never first.
        let i = self.cumulative.partition_point(|&c| c <= r);
        &self.clusters[i.min(self.clusters.len() - 1)].cluster
    }
}

/// Where a route sends a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Cluster(ClusterRef),
    Weighted(WeightedClusters),
}

impl Destination {
    /// The cluster for this request; `random` is called only for a
    /// weighted split (one call).
    #[inline]
    pub fn pick(&self, random: impl FnOnce() -> u64) -> &ClusterRef {
        match self {
            Destination::Cluster(c) => c,
            Destination::Weighted(w) => w.pick(random()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wc(name: &str, index: u32, weight: u32) -> WeightedCluster {
        WeightedCluster {
            cluster: ClusterRef {
                name: name.into(),
                index,
            },
            weight,
        }
    }

    /// splitmix64, seeded: the distribution tests are deterministic.
    fn rng(mut s: u64) -> impl FnMut() -> u64 {
        move || {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
    }

    fn counts(w: &WeightedClusters, n: usize, seed: u64) -> Vec<usize> {
        let mut next = rng(seed);
        let mut counts = vec![0; w.clusters().len()];
        for _ in 0..n {
            counts[w.pick(next()).index as usize] += 1;
        }
        counts
    }

    #[test]
    fn ninety_ten_split_within_two_percent() {
        let w = WeightedClusters::new(vec![wc("v1", 0, 90), wc("v2", 1, 10)]).unwrap();
        assert_eq!(w.total_weight(), 100);
        let c = counts(&w, 10_000, 7);
        assert!((8_800..=9_200).contains(&c[0]), "{c:?}");
        assert!((800..=1_200).contains(&c[1]), "{c:?}");
        assert_eq!(c[0] + c[1], 10_000);
    }

    #[test]
    fn many_clusters_follow_their_weights_and_zero_is_never_picked() {
        let weights = [5u32, 0, 25, 50, 0, 20];
        let w = WeightedClusters::new(
            weights
                .iter()
                .enumerate()
                .map(|(i, &wt)| wc(&format!("c{i}"), i as u32, wt))
                .collect(),
        )
        .unwrap();
        let n = 10_000;
        let c = counts(&w, n, 42);
        for (i, &wt) in weights.iter().enumerate() {
            let want = n * wt as usize / 100;
            let tolerance = n * 2 / 100;
            assert!(
                c[i].abs_diff(want) <= tolerance,
                "cluster {i}: {} picks, want {want} ± {tolerance} ({c:?})",
                c[i]
            );
            if wt == 0 {
                assert_eq!(c[i], 0, "a zero weight was picked");
            }
        }
    }

    #[test]
    fn extremes_of_the_random_range() {
        let w = WeightedClusters::new(vec![wc("a", 0, 1), wc("b", 1, 0), wc("c", 2, 1)]).unwrap();
        assert_eq!(&*w.pick(0).name, "a");
        assert_eq!(&*w.pick(u64::MAX / 2).name, "a");
        assert_eq!(&*w.pick(u64::MAX / 2 + 1).name, "c");
        assert_eq!(&*w.pick(u64::MAX).name, "c");
        let one = WeightedClusters::new(vec![wc("only", 3, u32::MAX)]).unwrap();
        assert_eq!(one.pick(u64::MAX).index, 3);
    }

    #[test]
    fn rejects_empty_zero_and_overflowing_totals() {
        assert_eq!(
            WeightedClusters::new(vec![]).unwrap_err(),
            "must not be empty"
        );
        assert_eq!(
            WeightedClusters::new(vec![wc("a", 0, 0), wc("b", 1, 0)]).unwrap_err(),
            "the weights must add up to more than 0"
        );
        assert_eq!(
            WeightedClusters::new(vec![wc("a", 0, u32::MAX), wc("b", 1, 1)]).unwrap_err(),
            "the sum of the weights must not exceed 4294967295"
        );
    }

    #[test]
    fn a_single_cluster_never_draws() {
        let d = Destination::Cluster(ClusterRef {
            name: "c".into(),
            index: 4,
        });
        assert_eq!(d.pick(|| panic!("no random number needed")).index, 4);
        let w = Destination::Weighted(WeightedClusters::new(vec![wc("w", 1, 1)]).unwrap());
        let mut calls = 0;
        assert_eq!(
            w.pick(|| {
                calls += 1;
                9
            })
            .index,
            1
        );
        assert_eq!(calls, 1);
    }
}
