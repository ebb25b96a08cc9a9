//! What `/stats` counted in each sealed segment of the journal, kept because a sealed segment
//! never changes (and its number is never reused): [`SegmentCache`].
//!
//! Only counts are kept, in a compact form: visits, corrupt lines, visits per day, and at most
//! `stats::IP_COUNTERS` addresses with their counts. Entries of segments no longer on disk
//! (retired into the journal's summary) are dropped at each count, so the cache holds at most
//! one entry per sealed segment: with the StatefulSet's 8 MiB segments and 192 MiB retained,
//! 24 entries, a few hundred KiB at worst.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::NaiveDate;

/// One sealed segment's counts.
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
    /// Visits per address, for at most `stats::IP_COUNTERS` addresses.
    pub ips: Vec<(IpAddr, u64)>,
    /// True if the address counts are Space-Saving estimates rather than exact.
    pub ips_approximate: bool,
}

/// The counts of the sealed segments counted so far, by segment number.
#[derive(Debug, Default)]
pub struct SegmentCache {
    counts: Mutex<HashMap<u64, Arc<SegmentCounts>>>,
}

impl SegmentCache {
    /// Segment `n`'s counts, if they were kept.
    pub fn get(&self, n: u64) -> Option<Arc<SegmentCounts>> {
        self.lock().get(&n).cloned()
    }

    /// Keeps segment `n`'s counts.
    pub fn insert(&self, n: u64, counts: Arc<SegmentCounts>) {
        self.lock().insert(n, counts);
    }

    /// Drops the entries of segments not in `on_disk`.
    pub fn keep_only(&self, on_disk: &[u64]) {
        self.lock().retain(|n, _| on_disk.contains(n));
    }

    /// How many segments' counts are kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True if none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<SegmentCounts>>> {
        // Entries are inserted whole: a panic cannot leave one half-made.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_segments_still_on_disk() {
        let cache = SegmentCache::default();
        for n in 1..=3 {
            let counts = SegmentCounts {
                visits: n,
                ..SegmentCounts::default()
            };
            cache.insert(n, Arc::new(counts));
        }
        assert_eq!(cache.get(2).map(|c| c.visits), Some(2));
        cache.keep_only(&[2, 3, 4]);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(1).is_none());
    }
}
