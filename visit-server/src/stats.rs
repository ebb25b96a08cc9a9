//! `GET /stats`: visit counts per replica, per client address and per day, computed by
//! streaming the journal's history once, in bounded memory, whatever its size: its sealed
//! segments (each counted once, then remembered: see [`SegmentCache`]), its live file, and
//! the summary of the retired segments.
//!
//! ```text
//! {"replica":"visit-server-0","scope":"local","partial":false,
//!  "total":{"visits":3,"corrupt_lines":0,"days":[{"day":"2026-11-26","visits":3}],"earlier_days_visits":0,
//!           "ips":[{"ip":"10.244.0.17","visits":3}],"other_ips_visits":0,"distinct_ips":1,"ips_exact":true},
//!  "replicas":[{"name":"visit-server-0","address":"0.0.0.0:8080", ...the same counts...}],
//!  "missing":[]}
//! ```
//!
//! `?scope=cluster` has the same shape, with one entry in `replicas` per replica that
//! answered (each asked for its own `/stats?scope=local`), `total` summed over them, and the
//! peers that did not answer in `missing`.
//!
//! # Caps
//!
//! - **Days**: a visit counts on the calendar day of its own timestamp, in the offset it was
//!   recorded with (as a person reading the file would group it). The [`MAX_DAYS`] latest days
//!   are listed, newest first; visits on earlier days are summed in `earlier_days_visits`.
//! - **Addresses**: counted exactly while the journal holds at most [`IP_COUNTERS`] distinct
//!   addresses (`ips_exact: true`, and `distinct_ips` is their number). Beyond that the
//!   counters follow the Space-Saving algorithm (Metwally, Agrawal and El Abbadi, 2005): a new
//!   address takes over the smallest counter and adds one to it. Every address with more than
//!   `visits / IP_COUNTERS` visits is then still counted, each count is at most that much too
//!   high, and `ips_exact` is false (`distinct_ips` is null). Either way the [`TOP_IPS`]
//!   largest counts are listed, and `other_ips_visits` is what the list leaves out.
//! - **The cluster total** sums the replicas' lists: it is exact (`ips_exact`) only when
//!   every replica's list was exact and complete (`other_ips_visits` 0), since an address
//!   below one replica's top [`TOP_IPS`] counts as 0 there.
//!
//! - **Retired segments** (`--retain-size`, `--retain-days`) are kept only as visits per day
//!   in the journal's summary: they count in `visits` and `days`, so those are every visit
//!   ever recorded, and in `other_ips_visits`, since their addresses are gone;
//!   `distinct_ips` and the address counts cover the visits still on disk.
//! - **Sealed segments** are counted once and their counts kept (see [`crate::counts`]), with
//!   their [`crate::counts::SEGMENT_IPS`] busiest addresses: the counts stay exact while no
//!   segment has more distinct addresses than that, and are Space-Saving estimates (as above)
//!   beyond.
//!
//! Memory is therefore at most about [`IP_COUNTERS`] × 64 bytes per computation, and
//! computations are limited by the `/visits` stream slots ([`crate::app::MAX_STREAMS`]).
//! Corrupt lines are counted in `corrupt_lines`, never in the visits. Nothing is recorded.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;
use visit_journal::{History, Reader, Visit};

use crate::counts::{SEGMENT_IPS, SegmentCache, SegmentCounts};
use crate::csv;
use crate::json;
use crate::peers::{self, Missing};

/// How many addresses are listed.
pub const TOP_IPS: usize = 100;

/// How many addresses are counted (exactly while there are no more).
pub const IP_COUNTERS: usize = 4096;

/// How many days are listed.
pub const MAX_DAYS: usize = 400;

/// Counts per day, keeping the [`MAX_DAYS`] latest.
#[derive(Debug, Default, Clone)]
struct Days {
    counts: BTreeMap<NaiveDate, u64>,
    /// Every day up to this one is summed in `earlier`.
    floor: Option<NaiveDate>,
    earlier: u64,
}

impl Days {
    fn add(&mut self, day: NaiveDate, n: u64) {
        if self.floor.is_some_and(|f| day <= f) {
            self.earlier += n;
            return;
        }
        *self.counts.entry(day).or_insert(0) += n;
        if self.counts.len() > MAX_DAYS
            && let Some((oldest, count)) = self.counts.pop_first()
        {
            self.earlier += count;
            self.floor = Some(oldest);
        }
    }
}

/// Counts per address; see the module docs.
#[derive(Debug, Default, Clone)]
struct Ips {
    counts: HashMap<IpAddr, u64>,
    /// The counters by size, kept only once the table is full (then every change needs the
    /// smallest one).
    by_count: BTreeSet<(u64, IpAddr)>,
    /// A counter was taken over: counts are upper bounds from then on.
    approximate: bool,
}

impl Ips {
    fn add(&mut self, ip: IpAddr) {
        self.add_n(ip, 1);
    }

    /// Counts `n` visits of `ip` at once (Space-Saving with weights: a new address that finds
    /// the table full takes over the smallest counter and adds `n` to it).
    fn add_n(&mut self, ip: IpAddr, n: u64) {
        if let Some(count) = self.counts.get_mut(&ip) {
            if !self.by_count.is_empty() {
                self.by_count.remove(&(*count, ip));
                self.by_count.insert((*count + n, ip));
            }
            *count += n;
            return;
        }
        if self.counts.len() < IP_COUNTERS {
            self.counts.insert(ip, n);
            if self.counts.len() == IP_COUNTERS {
                self.by_count = self.counts.iter().map(|(ip, c)| (*c, *ip)).collect();
            }
            return;
        }
        // The table is full, so `by_count` holds every counter.
        if let Some((smallest, victim)) = self.by_count.pop_first() {
            self.counts.remove(&victim);
            self.counts.insert(ip, smallest + n);
            self.by_count.insert((smallest + n, ip));
            self.approximate = true;
        }
    }
}

/// The counts of one journal, while they are taken.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    visits: u64,
    corrupt_lines: u64,
    days: Days,
    ips: Ips,
}

impl Tally {
    /// Counts a visit.
    pub fn add(&mut self, v: &Visit) {
        self.visits += 1;
        self.days.add(v.at.date_naive(), 1);
        self.ips.add(v.ip);
    }

    /// Counts a line that is not a record.
    pub fn add_corrupt(&mut self) {
        self.corrupt_lines += 1;
    }

    /// The counts as reported.
    pub fn summary(&self) -> Summary {
        let mut ips: Vec<(IpAddr, u64)> = self.ips.counts.iter().map(|(i, c)| (*i, *c)).collect();
        let distinct = ips.len() as u64;
        top(&mut ips);
        let listed: u64 = ips.iter().map(|(_, c)| c).sum();
        Summary {
            visits: self.visits,
            corrupt_lines: self.corrupt_lines,
            days: self
                .days
                .counts
                .iter()
                .rev()
                .map(|(d, c)| (*d, *c))
                .collect(),
            earlier_days_visits: self.days.earlier,
            other_ips_visits: self.visits.saturating_sub(listed),
            ips,
            distinct_ips: (!self.ips.approximate).then_some(distinct),
            ips_exact: !self.ips.approximate,
        }
    }
}

/// Keeps the [`TOP_IPS`] largest counts, largest first (ties by address).
fn top(ips: &mut Vec<(IpAddr, u64)>) {
    ips.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ips.truncate(TOP_IPS);
}

impl Tally {
    /// Forgets every count, keeping the tables' room.
    fn clear(&mut self) {
        self.visits = 0;
        self.corrupt_lines = 0;
        self.days = Days::default();
        self.ips.counts.clear();
        self.ips.by_count.clear();
        self.ips.approximate = false;
    }

    /// The counts to keep, with the `max_ips` busiest addresses.
    fn to_counts(&self, max_ips: usize) -> SegmentCounts {
        let mut ips: Vec<(IpAddr, u64)> = self.ips.counts.iter().map(|(i, n)| (*i, *n)).collect();
        let truncated = ips.len() > max_ips;
        if truncated {
            ips.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            ips.truncate(max_ips);
            // Kept for as long as the segment is on disk: no room for the ones left out.
            ips.shrink_to_fit();
        }
        SegmentCounts {
            visits: self.visits,
            corrupt_lines: self.corrupt_lines,
            days: self.days.counts.iter().map(|(d, n)| (*d, *n)).collect(),
            earlier_days_visits: self.days.earlier,
            ips,
            ips_approximate: self.ips.approximate || truncated,
        }
    }

    /// Adds a sealed segment's kept counts.
    fn merge(&mut self, other: &SegmentCounts) {
        self.visits += other.visits;
        self.corrupt_lines += other.corrupt_lines;
        for (day, n) in &other.days {
            self.days.add(*day, *n);
        }
        self.days.earlier += other.earlier_days_visits;
        for (ip, n) in &other.ips {
            self.ips.add_n(*ip, *n);
        }
        self.ips.approximate |= other.ips_approximate;
    }

    /// Adds the summary's counts of retired segments: visits per day, without addresses.
    fn add_retired(&mut self, days: &BTreeMap<NaiveDate, u64>, corrupt_lines: u64) {
        for (day, n) in days {
            self.visits += n;
            self.days.add(*day, *n);
        }
        self.corrupt_lines += corrupt_lines;
    }

    /// Counts what `reader` yields.
    fn add_file(&mut self, reader: Reader) -> visit_journal::Result<()> {
        for item in reader {
            match item {
                Ok(v) => self.add(&v),
                Err(e) if e.is_corrupt() => self.add_corrupt(),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Streams the journal's history at `path` once and counts it: the summary's counts of the
/// retired segments, each sealed segment (from `cache` when it was counted before), and the
/// live file.
///
/// # Errors
///
/// The journal's error if a file cannot be opened or read, or the summary is corrupt; corrupt
/// lines are counted instead.
pub fn tally_journal(path: &Path, cache: &SegmentCache) -> visit_journal::Result<Tally> {
    let history = History::open(path)?;
    let mut retired = Tally::default();
    retired.add_retired(history.retired_days(), history.retired_corrupt_lines());
    let mut sealed = Vec::new();
    let mut live = Tally::default();
    // One tally, cleared for each segment: its tables keep their room, so counting a cold
    // history of many segments does not leave the heap fragmented by a table per segment.
    let mut scratch = Tally::default();
    for file in history.into_files() {
        let (segment, reader) = file?;
        let Some(n) = segment else {
            live.add_file(reader)?;
            continue;
        };
        sealed.push(n);
        if cache.get(n).is_none() {
            scratch.clear();
            scratch.add_file(reader)?;
            cache.insert(n, Arc::new(scratch.to_counts(SEGMENT_IPS)));
        }
    }
    drop(scratch);
    // The sealed segments' sum: kept, or the kept one plus the segments sealed since, or (after
    // a retirement) made again from each segment's counts.
    let (done, sum) = cache.sum_prefix(&sealed);
    let mut total = Tally::default();
    if let Some(sum) = &sum {
        total.merge(sum);
    }
    if sum.is_none() || done < sealed.len() {
        for n in &sealed[done..] {
            if let Some(counts) = cache.get(*n) {
                total.merge(&counts);
            }
        }
        cache.set_sum(sealed, Arc::new(total.to_counts(IP_COUNTERS)));
    }
    total.merge(&live.to_counts(usize::MAX));
    total.merge(&retired.to_counts(0));
    Ok(total)
}

/// One replica's counts (or the total), as `/stats` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Visits (records).
    pub visits: u64,
    /// Lines that are not records.
    pub corrupt_lines: u64,
    /// Visits per day, newest first, at most [`MAX_DAYS`].
    pub days: Vec<(NaiveDate, u64)>,
    /// Visits on days before those listed.
    pub earlier_days_visits: u64,
    /// Visits per address, largest first, at most [`TOP_IPS`].
    pub ips: Vec<(IpAddr, u64)>,
    /// Visits from addresses not listed.
    pub other_ips_visits: u64,
    /// How many distinct addresses, if known exactly.
    pub distinct_ips: Option<u64>,
    /// The listed counts are exact.
    pub ips_exact: bool,
}

impl Summary {
    /// Sums replicas' counts; see the module docs for what stays exact.
    pub fn total<'a>(parts: impl IntoIterator<Item = &'a Summary>) -> Summary {
        let mut visits = 0;
        let mut corrupt_lines = 0;
        let mut days = Days::default();
        let mut ips: HashMap<IpAddr, u64> = HashMap::new();
        let mut complete = true;
        for p in parts {
            visits += p.visits;
            corrupt_lines += p.corrupt_lines;
            for (day, n) in &p.days {
                days.add(*day, *n);
            }
            days.earlier += p.earlier_days_visits;
            for (ip, n) in &p.ips {
                *ips.entry(*ip).or_insert(0) += n;
            }
            complete &= p.ips_exact && p.other_ips_visits == 0;
        }
        let distinct = ips.len() as u64;
        let mut ips: Vec<(IpAddr, u64)> = ips.into_iter().collect();
        top(&mut ips);
        let listed: u64 = ips.iter().map(|(_, c)| c).sum();
        Summary {
            visits,
            corrupt_lines,
            days: days.counts.iter().rev().map(|(d, c)| (*d, *c)).collect(),
            earlier_days_visits: days.earlier,
            other_ips_visits: visits.saturating_sub(listed),
            ips,
            distinct_ips: complete.then_some(distinct),
            ips_exact: complete,
        }
    }

    /// Writes the counts as members of `o`.
    pub fn write_fields(&self, o: &mut json::Object<'_>) {
        o.u64("visits", self.visits)
            .u64("corrupt_lines", self.corrupt_lines);
        let mut days = json::Array::new(o.key("days"));
        for (day, n) in &self.days {
            days.object().display("day", day).u64("visits", *n).end();
        }
        days.end();
        o.u64("earlier_days_visits", self.earlier_days_visits);
        let mut ips = json::Array::new(o.key("ips"));
        for (ip, n) in &self.ips {
            ips.object().display("ip", ip).u64("visits", *n).end();
        }
        ips.end();
        o.u64("other_ips_visits", self.other_ips_visits)
            .opt_u64("distinct_ips", self.distinct_ips)
            .bool("ips_exact", self.ips_exact);
    }

    /// Reads the fields [`Summary::write_fields`] writes, from a peer's answer.
    pub fn from_json(v: &serde_json::Value) -> Option<Summary> {
        let n = |key: &str| v.get(key)?.as_u64();
        let days = counted(v, "days", "day")?;
        let ips = counted(v, "ips", "ip")?;
        if days.len() > MAX_DAYS || ips.len() > TOP_IPS {
            return None;
        }
        let distinct_ips = match v.get("distinct_ips")? {
            serde_json::Value::Null => None,
            d => Some(d.as_u64()?),
        };
        Some(Summary {
            visits: n("visits")?,
            corrupt_lines: n("corrupt_lines")?,
            days,
            earlier_days_visits: n("earlier_days_visits")?,
            ips,
            other_ips_visits: n("other_ips_visits")?,
            distinct_ips,
            ips_exact: v.get("ips_exact")?.as_bool()?,
        })
    }
}

/// Reads a list of `{"<key>": K, "visits": n}` named `list`.
fn counted<K: std::str::FromStr>(
    v: &serde_json::Value,
    list: &str,
    key: &str,
) -> Option<Vec<(K, u64)>> {
    v.get(list)?
        .as_array()?
        .iter()
        .map(|d| {
            Some((
                d.get(key)?.as_str()?.parse().ok()?,
                d.get("visits")?.as_u64()?,
            ))
        })
        .collect()
}

/// One replica in a `/stats` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStats {
    /// Its name.
    pub name: String,
    /// Its address, as configured or resolved.
    pub address: String,
    /// Its counts.
    pub summary: Summary,
}

/// The `/stats` JSON: `replicas` sorted by name, their total, the missing peers.
pub fn render(
    replica: &str,
    scope: &str,
    mut replicas: Vec<ReplicaStats>,
    missing: &[Missing],
) -> String {
    replicas.sort_by(|a, b| a.name.cmp(&b.name));
    let total = Summary::total(replicas.iter().map(|r| &r.summary));
    let mut out = String::with_capacity(4096);
    let mut o = json::Object::new(&mut out);
    o.str("replica", replica)
        .str("scope", scope)
        .bool("partial", !missing.is_empty());
    let mut t = json::Object::new(o.key_on_new_line("total"));
    total.write_fields(&mut t);
    t.end();
    let mut list = json::Array::one_per_line(o.key_on_new_line("replicas"));
    for r in &replicas {
        let mut e = list.object();
        e.str("name", &r.name).str("address", &r.address);
        r.summary.write_fields(&mut e);
        e.end();
    }
    list.end();
    peers::write_missing(o.key_on_new_line("missing"), missing);
    o.end();
    out.push('\n');
    out
}

/// The `/stats` CSV ([`crate::csv`]): its header row, then a `day,replica,count` row per replica and listed
/// day with visits, days ascending, replicas by name within a day.
pub fn render_csv(replicas: &[ReplicaStats]) -> String {
    let mut rows: Vec<(chrono::NaiveDate, &str, u64)> = replicas
        .iter()
        .flat_map(|r| {
            r.summary
                .days
                .iter()
                .map(move |(day, n)| (*day, r.name.as_str(), *n))
        })
        .collect();
    rows.sort_unstable();
    let mut out = String::with_capacity(csv::STATS_HEADER.len() + rows.len() * 32);
    out.push_str(csv::STATS_HEADER);
    for (day, replica, n) in rows {
        // Writing into a String cannot fail.
        let _ = write!(out, "{day},");
        csv::push_field(&mut out, replica);
        let _ = write!(out, ",{n}\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visit(s: &str) -> Visit {
        s.parse().unwrap()
    }

    #[test]
    fn counts_per_day_and_address() {
        let mut t = Tally::default();
        for line in [
            "2026-11-25T23:59:59.000+03:00 - 10.0.0.1",
            "2026-11-26T00:00:00.000+03:00 - 10.0.0.2",
            "2026-11-26T10:00:00.000+03:00 - 10.0.0.1",
            "2026-11-26T10:00:00.000Z - ::1",
        ] {
            t.add(&visit(line));
        }
        t.add_corrupt();
        let s = t.summary();
        assert_eq!((s.visits, s.corrupt_lines), (4, 1));
        let day = |d: &str| d.parse::<NaiveDate>().unwrap();
        assert_eq!(s.days, [(day("2026-11-26"), 3), (day("2026-11-25"), 1)]);
        let ip = |i: &str| i.parse::<IpAddr>().unwrap();
        assert_eq!(
            s.ips,
            [(ip("10.0.0.1"), 2), (ip("10.0.0.2"), 1), (ip("::1"), 1)]
        );
        assert_eq!(
            (s.other_ips_visits, s.distinct_ips, s.ips_exact),
            (0, Some(3), true)
        );
    }

    #[test]
    fn days_keep_the_latest_and_sum_the_rest_whatever_the_order() {
        let base = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();
        let mut days = Days::default();
        // Out of order: newest half first, then the oldest, then the middle.
        let order: Vec<u64> = (300..500).chain(0..100).chain(100..300).collect();
        for i in order {
            days.add(base + chrono::Days::new(i), 2);
        }
        assert_eq!(days.counts.len(), MAX_DAYS);
        assert_eq!(
            days.counts.keys().next(),
            Some(&(base + chrono::Days::new(100)))
        );
        assert_eq!(days.earlier, 2 * 100);
        assert_eq!(days.counts.values().sum::<u64>() + days.earlier, 2 * 500);
    }

    #[test]
    fn addresses_stay_bounded_and_heavy_hitters_are_kept() {
        let mut t = Tally::default();
        let at = "2026-11-26T10:00:00.000Z";
        let heavy: IpAddr = "203.0.113.9".parse().unwrap();
        let mut n = 0u64;
        for i in 0..(3 * IP_COUNTERS as u32) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            t.add(&Visit::new(at.parse().unwrap(), ip));
            n += 1;
            if i % 8 == 0 {
                t.add(&Visit::new(at.parse().unwrap(), heavy));
                n += 1;
            }
        }
        assert!(t.ips.counts.len() <= IP_COUNTERS);
        let s = t.summary();
        assert_eq!(s.visits, n);
        assert!(!s.ips_exact);
        assert_eq!(s.distinct_ips, None);
        assert_eq!(s.ips.len(), TOP_IPS);
        assert_eq!(s.ips[0].0, heavy);
        // Space-Saving over-counts by at most visits / counters.
        let truth = u64::from(3 * IP_COUNTERS as u32).div_ceil(8);
        assert!(s.ips[0].1 >= truth && s.ips[0].1 <= truth + n / IP_COUNTERS as u64);
        assert_eq!(
            s.other_ips_visits,
            n - s.ips.iter().map(|(_, c)| c).sum::<u64>()
        );
    }

    #[test]
    fn totals_sum_replicas_and_say_when_they_are_exact() {
        let mut a = Tally::default();
        let mut b = Tally::default();
        a.add(&visit("2026-11-26T10:00:00.000Z - 10.0.0.1"));
        a.add(&visit("2026-11-26T10:00:01.000Z - 10.0.0.2"));
        b.add(&visit("2026-11-26T11:00:00.000Z - 10.0.0.1"));
        b.add(&visit("2026-11-27T11:00:00.000Z - 10.0.0.1"));
        let total = Summary::total([&a.summary(), &b.summary()]);
        assert_eq!(total.visits, 4);
        assert_eq!(total.days.len(), 2);
        assert_eq!(total.days[0].1, 1);
        assert_eq!(total.days[1].1, 3);
        assert_eq!(total.ips[0], ("10.0.0.1".parse().unwrap(), 3));
        assert_eq!((total.distinct_ips, total.ips_exact), (Some(2), true));
        let mut partial = b.summary();
        partial.other_ips_visits = 1;
        let total = Summary::total([&a.summary(), &partial]);
        assert_eq!((total.distinct_ips, total.ips_exact), (None, false));
    }

    #[test]
    fn json_round_trips_and_renders_every_part() {
        let mut t = Tally::default();
        t.add(&visit("2026-11-26T10:00:00.000Z - 10.0.0.1"));
        t.add(&visit("2026-11-26T10:00:00.000Z - fd00::1"));
        let s = t.summary();
        let text = render(
            "r0",
            "cluster",
            vec![ReplicaStats {
                name: "r0".into(),
                address: "127.0.0.1:1".into(),
                summary: s.clone(),
            }],
            &[Missing {
                address: "127.0.0.1:2".into(),
                error: crate::peers::PeerError::Refused,
            }],
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["partial"], true);
        assert_eq!(v["replicas"][0]["name"], "r0");
        assert_eq!(Summary::from_json(&v["replicas"][0]), Some(s.clone()));
        assert_eq!(Summary::from_json(&v["total"]), Some(s));
        assert_eq!(v["missing"][0]["error"], "refused");
        assert_eq!(Summary::from_json(&serde_json::json!({"visits": 1})), None);
    }

    #[test]
    fn each_sealed_segment_is_counted_once_and_forgotten_when_retired() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("visits.txt");
        let journal = visit_journal::Options::new()
            .sync(false)
            .rotate_size(4096)
            .open(&path)
            .unwrap();
        let v = visit("2026-11-26T10:44:36.123+03:00 - 10.0.0.7");
        for _ in 0..300 {
            journal.append(&v).unwrap();
        }
        let cache = SegmentCache::default();
        let cold = tally_journal(&path, &cache).unwrap().summary();
        assert_eq!(cold.visits, 300);
        let sealed = journal.stats().sealed_segments as usize;
        assert!(sealed >= 2);
        assert_eq!(cache.len(), sealed);
        // A sealed segment never changes, so it is not read again: were it changed behind
        // the journal's back, a warm count would not see it.
        let first = dir.path().join("visits.txt.000001");
        let in_first = std::fs::read_to_string(&first).unwrap().lines().count() as u64;
        std::fs::write(&first, "").unwrap();
        assert_eq!(tally_journal(&path, &cache).unwrap().summary(), cold);
        // Retired segments are counted from the summary, and their entries dropped.
        drop(journal);
        std::fs::write(&first, "2026-11-26T10:44:36.123+03:00 - 10.0.0.7\n").unwrap();
        let journal = visit_journal::Options::new()
            .retain_size(1)
            .open(&path)
            .unwrap();
        assert_eq!(journal.stats().sealed_segments, 0);
        let retired = tally_journal(&path, &cache).unwrap().summary();
        assert!(cache.is_empty());
        assert_eq!(retired.visits, 300 - in_first + 1);
        assert_eq!(
            retired.days.iter().map(|d| d.1).sum::<u64>(),
            retired.visits
        );
    }

    #[test]
    fn csv_rows_are_sorted_by_day_then_replica() {
        let rs = |name: &str, lines: &[&str]| {
            let mut t = Tally::default();
            for l in lines {
                t.add(&l.parse().unwrap());
            }
            ReplicaStats {
                name: name.into(),
                address: "127.0.0.1:1".into(),
                summary: t.summary(),
            }
        };
        let b = rs(
            "b",
            &["2026-11-25T10:00:00Z - ::1", "2026-11-26T10:00:00Z - ::1"],
        );
        let a = rs(
            "a,1",
            &["2026-11-26T10:00:00Z - ::1", "2026-11-26T11:00:00Z - ::2"],
        );
        assert_eq!(
            render_csv(&[b, a]),
            "day,replica,count\r\n2026-11-25,b,1\r\n2026-11-26,\"a,1\",2\r\n2026-11-26,b,1\r\n"
        );
        assert_eq!(render_csv(&[]), csv::STATS_HEADER);
    }
}
