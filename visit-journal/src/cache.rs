//! What each sealed segment holds, counted once and kept: [`CountCache`], shared by retention
//! (which asks a segment's newest visit and folds its days into the summary) and by
//! [`Journal::counts`](crate::Journal::counts) (which sums every file of the history).
//!
//! **Keys are identities, not numbers.** A count is kept under the file's device, inode, size
//! and times ([`FileKey`]), checked by whoever uses it against the file they hold open. An operator
//! who deletes the history under a running writer gets new segments that reuse the old
//! numbers: they are new files, with new keys, and are counted afresh.
//!
//! **A sum is made from what its maker holds.** Besides each segment's counts, the sum over
//! the last history counted is kept, with the keys of its segments in order, so a warm count
//! adds only the segments sealed since (and the live file). A request that counts a history
//! holds every segment's counts itself (an `Arc` each) before it sums: it never looks an entry
//! up again, so another request storing its own sum meanwhile (of an older view, say, which
//! lacks the newest segment) cannot take a segment out of this one's. A kept sum is used only
//! when its keys are a prefix of the request's, so it never stands for a file it did not count.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::counts::Tally;
use crate::dir::FileKey;

/// A sealed segment's counts, held by the one who counts a history.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    /// The segment's number (entries above a sum's highest number are kept when the sum is
    /// stored: they belong to segments sealed since).
    pub(crate) n: u64,
    pub(crate) key: FileKey,
    pub(crate) tally: Arc<Tally>,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct CountCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Each counted segment's counts, with its number.
    files: HashMap<FileKey, (u64, Arc<Tally>)>,
    /// The sum of the counts of these segments, in this order.
    sum: Option<(Vec<FileKey>, Arc<Tally>)>,
}

impl CountCache {
    /// The counts kept for the file with this key.
    pub(crate) fn get(&self, key: &FileKey) -> Option<Arc<Tally>> {
        self.lock().files.get(key).map(|(_, t)| Arc::clone(t))
    }

    /// Keeps segment `n`'s counts under its key.
    pub(crate) fn insert(&self, n: u64, key: FileKey, tally: Arc<Tally>) {
        self.lock().files.insert(key, (n, tally));
    }

    /// Forgets a file's counts (it was retired).
    pub(crate) fn forget(&self, key: &FileKey) {
        let mut inner = self.lock();
        inner.files.remove(key);
        if inner
            .sum
            .as_ref()
            .is_some_and(|(keys, _)| keys.contains(key))
        {
            inner.sum = None;
        }
    }

    /// The sum of `held` (one history's sealed segments, oldest first): the kept sum if its
    /// segments are the first of these, plus the rest; made from `held` alone otherwise. The
    /// result is kept as the new sum, and the entries of segments that are neither in `held`
    /// nor newer than all of them (retired, or replaced under the same number) are dropped.
    pub(crate) fn sum(&self, held: &[Held]) -> Tally {
        let kept = self.lock().sum.as_ref().and_then(|(keys, sum)| {
            let prefix =
                keys.len() <= held.len() && keys.iter().zip(held).all(|(key, h)| *key == h.key);
            prefix.then(|| (keys.len(), Arc::clone(sum)))
        });
        let (done, mut total) = match kept {
            Some((done, sum)) => (done, Tally::clone(&sum)),
            None => (0, Tally::default()),
        };
        if done == held.len() && done > 0 {
            return total;
        }
        for h in &held[done..] {
            total.add(&h.tally);
        }
        let keys: Vec<FileKey> = held.iter().map(|h| h.key).collect();
        let highest = held.iter().map(|h| h.n).max().unwrap_or(0);
        let mut inner = self.lock();
        inner
            .files
            .retain(|key, (n, _)| *n > highest || keys.contains(key));
        inner.sum = Some((keys, Arc::new(total.clone())));
        total
    }

    /// How many segments' counts are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().files.len()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Entries are replaced whole: a panic cannot leave one half-made.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dir::FileId;

    fn key(ino: u64) -> FileKey {
        FileKey {
            id: FileId { dev: 1, ino },
            size: 100,
            times: [1_764_000_000, 0, 1_764_000_000, 0],
        }
    }

    fn held(n: u64, ino: u64, visits: u32) -> Held {
        let mut tally = Tally::default();
        let at = "2026-11-26T10:00:00Z".parse().unwrap();
        for i in 0..visits {
            tally.visit(at, std::net::IpAddr::from([10, 0, 0, i as u8]));
        }
        Held {
            n,
            key: key(ino),
            tally: Arc::new(tally),
        }
    }

    /// The race that made `/stats` undercount for good: request B (view 1, 2, 3) has counted
    /// segment 3 when request A (an older view: 1, 2) stores its sum, which drops the entries
    /// A does not see; B then sums. B must still count segment 3: it sums what it holds.
    #[test]
    fn a_sum_stored_from_an_older_view_takes_nothing_from_a_newer_one() {
        let cache = CountCache::default();
        let (s1, s2, s3) = (held(1, 11, 10), held(2, 12, 20), held(3, 13, 40));
        for h in [&s1, &s2] {
            cache.insert(h.n, h.key, Arc::clone(&h.tally));
        }
        assert_eq!(cache.sum(&[s1.clone(), s2.clone()]).visits, 30);
        // B counts segment 3 and keeps it.
        cache.insert(s3.n, s3.key, Arc::clone(&s3.tally));
        let b = [s1.clone(), s2.clone(), s3.clone()];
        // A, with the older view, stores its sum (and prunes).
        assert_eq!(cache.sum(&[s1.clone(), s2.clone()]).visits, 30);
        assert!(
            cache.get(&s3.key).is_some(),
            "a newer segment is never pruned"
        );
        // B sums.
        assert_eq!(cache.sum(&b).visits, 70);
        // And the kept sum is now B's; A again still gets its own answer.
        assert_eq!(cache.sum(&[s1.clone(), s2.clone()]).visits, 30);
        assert_eq!(cache.sum(&b).visits, 70);
    }

    #[test]
    fn a_kept_sum_is_used_only_for_the_same_files() {
        let cache = CountCache::default();
        let (s1, s2) = (held(1, 11, 10), held(2, 12, 20));
        assert_eq!(cache.sum(&[s1.clone(), s2.clone()]).visits, 30);
        // The history was deleted; segment 1 is a new file with the old number.
        let new1 = held(1, 21, 3);
        assert_eq!(cache.sum(std::slice::from_ref(&new1)).visits, 3);
        // Same inode, other size (written by hand): another file as far as counts go.
        let mut grown = s1.clone();
        grown.key.size += 1;
        grown.tally = held(1, 11, 5).tally;
        assert_eq!(cache.sum(&[grown, s2.clone()]).visits, 25);
        // Entries of files no longer in the newest view are dropped, newer ones kept.
        cache.insert(9, key(99), Arc::clone(&s1.tally));
        assert_eq!(cache.sum(std::slice::from_ref(&new1)).visits, 3);
        assert!(cache.get(&key(99)).is_some());
        assert!(cache.get(&s1.key).is_none());
        assert_eq!(cache.sum(&[]).visits, 0);
    }

    #[test]
    fn forgetting_a_retired_file_drops_the_sum_that_counted_it() {
        let cache = CountCache::default();
        let (s1, s2) = (held(1, 11, 10), held(2, 12, 20));
        for h in [&s1, &s2] {
            cache.insert(h.n, h.key, Arc::clone(&h.tally));
        }
        cache.sum(&[s1.clone(), s2.clone()]);
        cache.forget(&s1.key);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.sum(std::slice::from_ref(&s2)).visits, 20);
    }
}
