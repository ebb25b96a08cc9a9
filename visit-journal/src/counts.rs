//! Counting visits: what one file holds ([`Tally`]), sums over files, and [`Counts`], the
//! public answer for a whole history. Pure: no I/O (`history.rs` reads the files,
//! `cache.rs` keeps what sealed segments hold).
//!
//! # Addresses
//!
//! Visits per address are counted exactly while a count holds at most
//! [`ADDRESS_COUNTERS`] distinct addresses. Beyond that the counters follow the Space-Saving
//! algorithm (Metwally, Agrawal and El Abbadi, 2005): a new address takes over the smallest
//! counter and adds its visits to it. Every address with more than `visits / counters`
//! visits is then still counted, each count is at most that much too high, and the counts
//! are marked approximate. A sealed segment's counts are kept with its
//! [`SEGMENT_ADDRESSES`] busiest addresses (they are kept for as long as the segment is on
//! disk), so sums over segments are Space-Saving sums too.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, NaiveDate};

/// How many addresses a count of a history (or a sum over files) keeps.
pub(crate) const ADDRESS_COUNTERS: usize = 4096;

/// How many addresses are kept per sealed segment (its busiest): the error bound of a sum
/// over segments (`visits / SEGMENT_ADDRESSES` per address at most) stays well below what a
/// top-10 list can show, and a segment's kept counts stay under 32 KiB.
pub(crate) const SEGMENT_ADDRESSES: usize = 1024;

/// Counts per address; see the module docs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Addresses {
    counts: HashMap<IpAddr, u64>,
    /// The counters by size, kept only once the table is full (then every change needs the
    /// smallest one).
    by_count: BTreeSet<(u64, IpAddr)>,
    /// A counter was taken over, or addresses were left out: counts are upper bounds.
    approximate: bool,
    /// How many counters there may be.
    capacity: usize,
}

impl Addresses {
    fn with_capacity(capacity: usize) -> Addresses {
        Addresses {
            capacity,
            ..Addresses::default()
        }
    }

    /// Counts `n` visits of `ip` at once (Space-Saving with weights: a new address that finds
    /// the table full takes over the smallest counter and adds `n` to it).
    fn add(&mut self, ip: IpAddr, n: u64) {
        if let Some(count) = self.counts.get_mut(&ip) {
            if !self.by_count.is_empty() {
                self.by_count.remove(&(*count, ip));
                self.by_count.insert((*count + n, ip));
            }
            *count += n;
            return;
        }
        if self.counts.len() < self.capacity {
            self.counts.insert(ip, n);
            if self.counts.len() == self.capacity {
                self.by_count = self.counts.iter().map(|(ip, c)| (*c, *ip)).collect();
            }
            return;
        }
        // The table is full, so `by_count` holds every counter.
        if let Some((smallest, victim)) = self.by_count.pop_first() {
            self.counts.remove(&victim);
            self.counts.insert(ip, smallest + n);
            self.by_count.insert((smallest + n, ip));
        }
        self.approximate = true;
    }

    /// The counts, largest first (ties by address).
    fn sorted(&self) -> Vec<(IpAddr, u64)> {
        let mut list: Vec<(IpAddr, u64)> = self.counts.iter().map(|(i, n)| (*i, *n)).collect();
        list.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        list
    }

    /// The `max` busiest, as kept for a sealed segment.
    fn truncated(&self, max: usize) -> Addresses {
        if self.counts.len() <= max {
            let mut kept = self.clone();
            kept.by_count.clear();
            kept.capacity = max;
            kept.counts.shrink_to_fit();
            return kept;
        }
        let mut list = self.sorted();
        list.truncate(max);
        let mut counts = HashMap::with_capacity(list.len());
        counts.extend(list);
        Addresses {
            counts,
            by_count: BTreeSet::new(),
            approximate: true,
            capacity: max,
        }
    }
}

/// What one file (or a sum of files) of the history holds: visits per day, corrupt lines,
/// the newest visit (the largest timestamp, wherever it is in the file), and visits per
/// address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) visits: u64,
    pub(crate) days: BTreeMap<NaiveDate, u64>,
    pub(crate) corrupt: u64,
    pub(crate) newest: Option<DateTime<FixedOffset>>,
    addresses: Addresses,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally::with_addresses(ADDRESS_COUNTERS)
    }
}

impl Tally {
    /// An empty tally that keeps at most `capacity` address counters.
    pub(crate) fn with_addresses(capacity: usize) -> Tally {
        Tally {
            visits: 0,
            days: BTreeMap::new(),
            corrupt: 0,
            newest: None,
            addresses: Addresses::with_capacity(capacity),
        }
    }

    /// Counts one visit.
    pub(crate) fn visit(&mut self, at: DateTime<FixedOffset>, ip: IpAddr) {
        self.visits += 1;
        *self.days.entry(at.date_naive()).or_default() += 1;
        if self.newest.is_none_or(|newest| at > newest) {
            self.newest = Some(at);
        }
        self.addresses.add(ip, 1);
    }

    /// Adds another tally's counts (a sealed segment's, to a sum).
    pub(crate) fn add(&mut self, other: &Tally) {
        self.visits = self.visits.saturating_add(other.visits);
        self.corrupt = self.corrupt.saturating_add(other.corrupt);
        for (day, n) in &other.days {
            let total = self.days.entry(*day).or_default();
            *total = total.saturating_add(*n);
        }
        if other.newest > self.newest {
            self.newest = other.newest;
        }
        for (ip, n) in &other.addresses.counts {
            self.addresses.add(*ip, *n);
        }
        self.addresses.approximate |= other.addresses.approximate;
    }

    /// The counts kept for a sealed segment: its [`SEGMENT_ADDRESSES`] busiest addresses.
    pub(crate) fn kept(&self) -> Tally {
        Tally {
            visits: self.visits,
            days: self.days.clone(),
            corrupt: self.corrupt,
            newest: self.newest,
            addresses: self.addresses.truncated(SEGMENT_ADDRESSES),
        }
    }
}

/// A file of a journal's history that could not be used as it is, and what is wrong with it.
///
/// Three kinds of file show up here (CONTRACT §10):
///
/// - a name that looks like a sealed segment (`visits.txt.000007`) but is not a regular file
///   that can be read: a directory, a FIFO, a socket, a file without read permission.
///   Readers skip it (never opening it in a way that could block); retention, when it
///   reaches it, renames it out of the numbering;
/// - such a file after retention set it aside: `visits.txt.000007.damaged`, left for the
///   operator to look at (nothing is ever deleted that is not a sealed segment);
/// - a summary (`visits.txt.summary`) that does not parse, or whose days do not add up to the
///   total of its first line. Its counts are left out of every count until it is repaired,
///   and retention pauses (a summary is never rewritten from a damaged one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damaged {
    path: PathBuf,
    reason: String,
}

impl Damaged {
    pub(crate) fn new(path: &Path, reason: impl Into<String>) -> Damaged {
        Damaged {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's name within the journal's directory (`visits.txt.summary`), as text.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .unwrap_or(self.path.as_os_str())
            .to_string_lossy()
            .into_owned()
    }

    /// What is wrong with it, for people: `not a regular file (a directory)`,
    /// `line 3 at byte 40: not a 'YYYY-MM-DD COUNT' line`, ….
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl std::fmt::Display for Damaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// The counts of a journal's whole history at one moment: every visit ever recorded, per day
/// and per address, and the files that could not be counted.
///
/// Made by [`Journal::counts`](crate::Journal::counts) (which keeps what each sealed segment
/// holds, so a second count reads only the live file) or [`History::counts`](crate::History::counts).
///
/// ```
/// use visit_journal::{Options, Visit};
///
/// # fn main() -> visit_journal::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("visits.txt");
/// let journal = Options::new().rotate_size(4096).retain_size(8192).open(&path)?;
/// for _ in 0..500 {
///     journal.append(&Visit::now("10.0.0.7".parse().unwrap()))?;
/// }
/// let counts = journal.counts()?;
/// assert_eq!(counts.visits(), 500); // retired segments included, from the summary
/// assert_eq!(counts.days().values().sum::<u64>(), 500);
/// assert!(counts.damaged().is_empty());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    pub(crate) total: Tally,
    /// Visits counted only in the summary (their addresses are gone).
    pub(crate) retired_visits: u64,
    pub(crate) damaged: Vec<Damaged>,
}

impl Counts {
    /// Every visit of the history: the records of its files, and the visits the summary
    /// counts for the segments retention deleted. A damaged summary's visits are not in it:
    /// see [`Counts::damaged`].
    pub fn visits(&self) -> u64 {
        self.total.visits
    }

    /// Visits per day (the day as written in each record's own offset), every day that has
    /// any; they add up to [`Counts::visits`].
    pub fn days(&self) -> &BTreeMap<NaiveDate, u64> {
        &self.total.days
    }

    /// Lines that are not records, in the files and in the retired segments.
    pub fn corrupt_lines(&self) -> u64 {
        self.total.corrupt
    }

    /// Visits per address, largest first (ties by address), for at most 4096 addresses.
    /// Retired visits have no address any more, so these cover the files on disk. Exact when
    /// [`Counts::addresses_exact`]; otherwise Space-Saving estimates (see the module docs of
    /// the crate's `counts`): each at most `visits / 1024` too high, and every address with
    /// more visits than that is listed.
    pub fn addresses(&self) -> Vec<(IpAddr, u64)> {
        self.total.addresses.sorted()
    }

    /// True if [`Counts::addresses`] lists every address with its exact count.
    pub fn addresses_exact(&self) -> bool {
        !self.total.addresses.approximate
    }

    /// Visits counted only in the summary, as visits per day (their segments were retired).
    pub fn retired_visits(&self) -> u64 {
        self.retired_visits
    }

    /// The files that could not be counted, or were set aside; empty for a healthy history.
    /// When it is not empty the counts are what could be read, and this says what could not.
    pub fn damaged(&self) -> &[Damaged] {
        &self.damaged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<FixedOffset> {
        s.parse().unwrap()
    }

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn counts_per_day_address_and_the_newest() {
        let mut t = Tally::default();
        t.visit(at("2026-11-26T23:59:59.999+03:00"), ip(1));
        t.visit(at("2026-11-26T00:00:00Z"), ip(2));
        t.visit(at("2026-11-27T01:00:00-05:00"), ip(1));
        assert_eq!(t.visits, 3);
        let day = |d: &str| d.parse::<NaiveDate>().unwrap();
        assert_eq!(t.days[&day("2026-11-26")], 2);
        assert_eq!(t.days[&day("2026-11-27")], 1);
        // The newest is the latest instant, not the latest wall clock.
        assert_eq!(t.newest, Some(at("2026-11-27T01:00:00-05:00")));
        assert_eq!(t.addresses.sorted(), [(ip(1), 2), (ip(2), 1)]);
        assert!(!t.addresses.approximate);
    }

    #[test]
    fn addresses_stay_bounded_and_heavy_hitters_are_kept() {
        let mut t = Tally::default();
        let when = at("2026-11-26T10:00:00Z");
        let heavy = ip(0xff_ffff);
        let mut n = 0u64;
        for i in 0..(3 * ADDRESS_COUNTERS as u32) {
            t.visit(when, ip(i));
            n += 1;
            if i % 8 == 0 {
                t.visit(when, heavy);
                n += 1;
            }
        }
        assert!(t.addresses.counts.len() <= ADDRESS_COUNTERS);
        assert!(t.addresses.approximate);
        let list = t.addresses.sorted();
        assert_eq!(list[0].0, heavy);
        // Space-Saving over-counts by at most visits / counters.
        let truth = u64::from(3 * ADDRESS_COUNTERS as u32).div_ceil(8);
        assert!(list[0].1 >= truth && list[0].1 <= truth + n / ADDRESS_COUNTERS as u64);
    }

    #[test]
    fn a_kept_segment_keeps_its_busiest_addresses_and_says_so() {
        let mut t = Tally::default();
        let when = at("2026-11-26T10:00:00Z");
        for i in 0..(SEGMENT_ADDRESSES as u32 + 10) {
            t.visit(when, ip(i));
        }
        t.visit(when, ip(5));
        let kept = t.kept();
        assert_eq!(kept.visits, t.visits);
        assert_eq!(kept.addresses.counts.len(), SEGMENT_ADDRESSES);
        assert!(kept.addresses.approximate);
        assert_eq!(kept.addresses.sorted()[0], (ip(5), 2));
        let mut small = Tally::default();
        small.visit(when, ip(1));
        assert!(!small.kept().addresses.approximate, "nothing left out");
        // Sums of kept segments carry the flag.
        let mut sum = Tally::default();
        sum.add(&small.kept());
        assert!(!sum.addresses.approximate);
        sum.add(&kept);
        assert!(sum.addresses.approximate);
        assert_eq!(sum.visits, t.visits + 1);
    }
}
