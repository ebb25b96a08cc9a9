//! What `/stats` counted in each sealed segment of the journal, kept because a sealed segment
//! never changes (and its number is never reused): [`SegmentCache`].
//!
//! Only counts are kept, in a compact form: visits, corrupt lines, visits per day, and the
//! [`SEGMENT_IPS`] busiest addresses with their counts. Entries of segments no longer on disk
//! (retired into the journal's summary) are dropped at each count, so the cache holds one
//! entry per sealed segment: 32 KiB at most each, 4 MiB for a 1 GiB history of 8 MiB segments
//! (768 KiB for the StatefulSet's 24).
//!
//! `main.rs` fills it once at start on a low-priority background thread, so that a restarted
//! replica answers its peers within their timeout; a `/stats` that comes first counts what is
//! not counted yet itself.
//!
//! Besides, the sum over the current set of sealed segments is kept (with up to
//! `stats::IP_COUNTERS` addresses), so a warm `/stats` adds only the live file to it; after a
//! rotation the new segment is added to the sum, and after a retirement the sum is made again
//! from the segments' entries.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::NaiveDate;

/// How many addresses are kept per sealed segment (the busiest): the sum over segments is a
/// Space-Saving summary, whose error bound (`visits / SEGMENT_IPS` per address at most) this
/// keeps well below what a top-10 list can show.
pub const SEGMENT_IPS: usize = 1024;

/// One sealed segment's counts (or their sum over several).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentCounts {
    /// Visits (records).
    pub visits: u64,
    /// Lines that are not records.
    pub corrupt_lines: u64,
    /// Visits per day (the day of each record's own offset).
    pub days: Vec<(NaiveDate, u64)>,
    /// Visits summed before the days listed (a segment spanning very many days).
    pub earlier_days_visits: u64,
    /// Visits per address, for at most [`SEGMENT_IPS`] addresses (`stats::IP_COUNTERS` in a
    /// sum).
    pub ips: Vec<(IpAddr, u64)>,
    /// True if the address counts are estimates, or leave addresses out.
    pub ips_approximate: bool,
}

/// The counts of the sealed segments counted so far, by segment number, and their sum.
#[derive(Debug, Default)]
pub struct SegmentCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    segments: HashMap<u64, Arc<SegmentCounts>>,
    /// The sum of the counts of these segments (ascending numbers).
    sum: Option<(Vec<u64>, Arc<SegmentCounts>)>,
}

impl SegmentCache {
    /// Segment `n`'s counts, if they were kept.
    pub fn get(&self, n: u64) -> Option<Arc<SegmentCounts>> {
        self.lock().segments.get(&n).cloned()
    }

    /// Keeps segment `n`'s counts.
    pub fn insert(&self, n: u64, counts: Arc<SegmentCounts>) {
        self.lock().segments.insert(n, counts);
    }

    /// The kept sum whose segments are the longest prefix of `segments`, with that prefix's
    /// length (0 and `None` if there is none).
    pub fn sum_prefix(&self, segments: &[u64]) -> (usize, Option<Arc<SegmentCounts>>) {
        match &self.lock().sum {
            Some((of, sum)) if segments.starts_with(of) => (of.len(), Some(Arc::clone(sum))),
            _ => (0, None),
        }
    }

    /// Keeps the sum of `segments`' counts, and drops the entries of every other segment (no
    /// longer on disk: retired into the journal's summary).
    pub fn set_sum(&self, segments: Vec<u64>, sum: Arc<SegmentCounts>) {
        let mut inner = self.lock();
        inner.segments.retain(|n, _| segments.contains(n));
        inner.sum = Some((segments, sum));
    }

    /// How many segments' counts are kept.
    pub fn len(&self) -> usize {
        self.lock().segments.len()
    }

    /// True if none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Entries are replaced whole: a panic cannot leave one half-made.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_sum_of_a_prefix_and_only_the_segments_still_on_disk() {
        let cache = SegmentCache::default();
        let counts = |visits| {
            Arc::new(SegmentCounts {
                visits,
                ..SegmentCounts::default()
            })
        };
        for n in 1..=3 {
            cache.insert(n, counts(n));
        }
        assert_eq!(cache.get(2).map(|c| c.visits), Some(2));
        assert_eq!(cache.sum_prefix(&[1, 2]).0, 0);
        cache.set_sum(vec![2, 3], counts(5));
        assert_eq!(cache.len(), 2);
        assert!(cache.get(1).is_none());
        assert_eq!(cache.sum_prefix(&[2, 3, 4]).0, 2);
        assert_eq!(cache.sum_prefix(&[2, 3, 4]).1.map(|s| s.visits), Some(5));
        assert_eq!(cache.sum_prefix(&[3, 4]).0, 0, "2 was retired: no prefix");
    }
}
