//! Durations of exchanges as a histogram over fixed bounds: rows of different events, days and
//! redeliveries add up bucket by bucket, and p50 / p95 are read back by interpolation inside
//! the bucket the rank falls in (as Prometheus's `histogram_quantile` does), capped by the
//! largest duration seen. From a tenth of a second (an automatic answer) to 30 days (a
//! request's validity).
//!
//! The bounds are stored with every row's buckets by position: only ever append to them (and
//! migrate the arrays) — never change one.

/// Upper bounds of the buckets, in milliseconds; one more bucket holds what is above.
pub const BOUNDS_MS: [i64; 22] = [
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    30_000,
    60_000,
    120_000,
    300_000,
    600_000,
    1_800_000,
    3_600_000,
    3 * 3_600_000,
    6 * 3_600_000,
    12 * 3_600_000,
    24 * 3_600_000,
    3 * 24 * 3_600_000,
    7 * 24 * 3_600_000,
    14 * 24 * 3_600_000,
    30 * 24 * 3_600_000,
];

/// Buckets of one row: one per bound and one above.
pub const BUCKETS: usize = BOUNDS_MS.len() + 1;

/// The bucket a duration falls in: the first whose bound is at or above it.
pub fn bucket_of(duration_ms: i64) -> usize {
    BOUNDS_MS.partition_point(|&b| b < duration_ms)
}

/// The buckets of a single duration (all zero when there is none).
#[cfg(test)]
pub fn one(duration_ms: Option<i64>) -> Vec<i64> {
    let mut buckets = vec![0; BUCKETS];
    if let Some(d) = duration_ms {
        buckets[bucket_of(d)] = 1;
    }
    buckets
}

/// The `q` quantile (0 < q ≤ 1) of the durations in `buckets`, never above `max_ms`; `None`
/// when there are none.
pub fn quantile(buckets: &[i64], q: f64, max_ms: i64) -> Option<i64> {
    let total: i64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0i64;
    for (i, &n) in buckets.iter().enumerate() {
        if n > 0 && (below + n) as f64 >= rank {
            if i == BOUNDS_MS.len() {
                // Above every bound nothing is known but the largest duration.
                return Some(max_ms);
            }
            let lower = if i == 0 { 0 } else { BOUNDS_MS[i - 1] };
            let upper = BOUNDS_MS[i].min(max_ms);
            let share = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
            let value = lower as f64 + (upper - lower).max(0) as f64 * share;
            return Some((value.round() as i64).min(max_ms));
        }
        below += n;
    }
    Some(max_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(rows: &[Vec<i64>]) -> Vec<i64> {
        (0..BUCKETS)
            .map(|i| rows.iter().map(|r| r[i]).sum())
            .collect()
    }

    #[test]
    fn a_duration_falls_in_the_first_bucket_whose_bound_holds_it() {
        assert_eq!(one(Some(0))[0], 1);
        assert_eq!(one(Some(100))[0], 1);
        assert_eq!(one(Some(101))[1], 1);
        assert_eq!(one(Some(40 * 24 * 3_600_000))[BUCKETS - 1], 1);
        assert_eq!(one(None), vec![0; BUCKETS]);
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket_and_never_pass_the_maximum() {
        // 90 answers within 100 ms, 10 between 1 s and 2.5 s.
        let mut rows = vec![one(Some(80)); 90];
        rows.extend(vec![one(Some(2_000)); 10]);
        let buckets = add(&rows);
        let p50 = quantile(&buckets, 0.5, 2_000).unwrap();
        assert!(p50 <= 100, "{p50}");
        let p95 = quantile(&buckets, 0.95, 2_000).unwrap();
        assert!((1_000..=2_000).contains(&p95), "{p95}");
        assert_eq!(quantile(&buckets, 1.0, 2_000), Some(2_000));
        assert_eq!(quantile(&[0; BUCKETS], 0.5, 0), None);
        // Above every bound: the maximum seen.
        let far = one(Some(40 * 24 * 3_600_000));
        assert_eq!(
            quantile(&far, 0.5, 40 * 24 * 3_600_000),
            Some(40 * 24 * 3_600_000)
        );
    }
}
