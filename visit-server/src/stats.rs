//! `GET /stats`: visit counts per replica, per client address and per day, over the journal's
//! whole history: its sealed segments, its live file, and the summary of the retired
//! segments. The counting is the library's ([`visit_journal::Journal::counts`]): it keeps what
//! each sealed segment holds, by file identity, so a warm `/stats` reads only the live file;
//! this module turns its [`Counts`] into the answer.
//!
//! ```text
//! {"replica":"visit-server-0","scope":"local","partial":false,
//!  "total":{"visits":3,"corrupt_lines":0,"days":[{"day":"2026-11-26","visits":3}],
//!           "ips":[{"ip":"10.244.0.17","visits":3}],"other_ips_visits":0,"distinct_ips":1,"ips_exact":true},
//!  "replicas":[{"name":"visit-server-0","address":"0.0.0.0:8080", ...the same counts...}],
//!  "missing":[],
//!  "damaged":[]}
//! ```
//!
//! `?scope=cluster` has the same shape, with one entry in `replicas` per replica that
//! answered (each asked for its own `/stats?scope=local`), `total` summed over them, the
//! peers that did not answer in `missing`, and every replica's damaged files in `damaged`.
//!
//! # What is exact
//!
//! - **Every figure is a count of the history at one moment** (CONTRACT §10): the library
//!   counts one consistent snapshot of the files, whatever rotations, retirements and other
//!   requests run meanwhile.
//! - **Days**: a visit counts on the calendar day of its own timestamp, in the offset it was
//!   recorded with (as a person reading the file would group it). Every day with visits is
//!   listed, newest first, so the days add up to `visits`.
//! - **Addresses**: counted exactly while the journal holds at most 4096 distinct addresses
//!   (`ips_exact: true`, and `distinct_ips` is their number). Beyond that the counts are the
//!   library's Space-Saving estimates: every address with more than `visits / 1024` visits is
//!   still counted, each count is at most that much too high, and `ips_exact` is false
//!   (`distinct_ips` is null). Either way the [`TOP_IPS`] largest counts are listed, and
//!   `other_ips_visits` is what the list leaves out.
//! - **The cluster total** sums the replicas' lists: it is exact (`ips_exact`) only when
//!   every replica's list was exact and complete (`other_ips_visits` 0), since an address
//!   below one replica's top [`TOP_IPS`] counts as 0 there.
//! - **Retired segments** (`--retain-size`, `--retain-days`) are kept only as visits per day
//!   in the journal's summary: they count in `visits` and `days`, so those are every visit
//!   ever recorded, and in `other_ips_visits`, since their addresses are gone.
//! - **Damaged files** (a summary that does not parse or add up, a file with a segment's name
//!   that cannot be read, one set aside as `<name>.damaged`) are listed in `damaged` with the
//!   replica, the file's name and what is wrong; what they held is not in the counts (a
//!   damaged summary's retired visits, say), and the list says so. The answer is still 200.
//!
//! Corrupt lines are counted in `corrupt_lines`, never in the visits. Nothing is recorded.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;

use chrono::NaiveDate;
use visit_journal::Counts;

use crate::csv;
use crate::json;
use crate::peers::{self, Missing};

/// How many addresses are listed.
pub const TOP_IPS: usize = 100;

/// One replica's counts (or the total), as `/stats` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Visits (records).
    pub visits: u64,
    /// Lines that are not records.
    pub corrupt_lines: u64,
    /// Visits per day, newest first, every day with visits.
    pub days: Vec<(NaiveDate, u64)>,
    /// Visits per address, largest first, at most [`TOP_IPS`].
    pub ips: Vec<(IpAddr, u64)>,
    /// Visits from addresses not listed.
    pub other_ips_visits: u64,
    /// How many distinct addresses, if known exactly.
    pub distinct_ips: Option<u64>,
    /// The listed counts are exact.
    pub ips_exact: bool,
}

/// A file of a replica's journal that could not be counted (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedFile {
    /// The file's name within the journal's directory (`visits.txt.summary`).
    pub file: String,
    /// What is wrong with it.
    pub error: String,
}

impl DamagedFile {
    /// The library's list, as `/stats` names them.
    pub fn list(counts: &[visit_journal::Damaged]) -> Vec<DamagedFile> {
        counts
            .iter()
            .map(|d| DamagedFile {
                file: d.file_name(),
                error: d.reason().to_string(),
            })
            .collect()
    }
}

impl Summary {
    /// The answer for one journal's counts.
    pub fn of(counts: &Counts) -> Summary {
        let mut ips = counts.addresses();
        let distinct = ips.len() as u64;
        ips.truncate(TOP_IPS);
        let listed: u64 = ips.iter().map(|(_, c)| c).sum();
        let exact = counts.addresses_exact();
        Summary {
            visits: counts.visits(),
            corrupt_lines: counts.corrupt_lines(),
            days: counts.days().iter().rev().map(|(d, c)| (*d, *c)).collect(),
            other_ips_visits: counts.visits().saturating_sub(listed),
            ips,
            distinct_ips: exact.then_some(distinct),
            ips_exact: exact,
        }
    }

    /// Sums replicas' counts; see the module docs for what stays exact.
    pub fn total<'a>(parts: impl IntoIterator<Item = &'a Summary>) -> Summary {
        let mut visits: u64 = 0;
        let mut corrupt_lines: u64 = 0;
        let mut days: BTreeMap<NaiveDate, u64> = BTreeMap::new();
        let mut ips: HashMap<IpAddr, u64> = HashMap::new();
        let mut complete = true;
        for p in parts {
            visits = visits.saturating_add(p.visits);
            corrupt_lines = corrupt_lines.saturating_add(p.corrupt_lines);
            for (day, n) in &p.days {
                let d = days.entry(*day).or_insert(0);
                *d = d.saturating_add(*n);
            }
            for (ip, n) in &p.ips {
                let c = ips.entry(*ip).or_insert(0);
                *c = c.saturating_add(*n);
            }
            complete &= p.ips_exact && p.other_ips_visits == 0;
        }
        let distinct = ips.len() as u64;
        let mut ips: Vec<(IpAddr, u64)> = ips.into_iter().collect();
        ips.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        ips.truncate(TOP_IPS);
        let listed: u64 = ips.iter().map(|(_, c)| c).sum();
        Summary {
            visits,
            corrupt_lines,
            days: days.into_iter().rev().collect(),
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
        let mut days: Vec<(NaiveDate, u64)> = counted(v, "days", "day")?;
        let ips = counted(v, "ips", "ip")?;
        if ips.len() > TOP_IPS {
            return None;
        }
        // Newest first, each day once: what `write_fields` writes, and what `total` relies on.
        if days.windows(2).any(|w| w[0].0 <= w[1].0) {
            days.sort_unstable_by_key(|d| std::cmp::Reverse(d.0));
            days.dedup_by(|b, a| {
                if a.0 == b.0 {
                    a.1 = a.1.saturating_add(b.1);
                    true
                } else {
                    false
                }
            });
        }
        let distinct_ips = match v.get("distinct_ips")? {
            serde_json::Value::Null => None,
            d => Some(d.as_u64()?),
        };
        Some(Summary {
            visits: n("visits")?,
            corrupt_lines: n("corrupt_lines")?,
            days,
            ips,
            other_ips_visits: n("other_ips_visits")?,
            distinct_ips,
            ips_exact: v.get("ips_exact")?.as_bool()?,
        })
    }

    /// Exact counts of `visits`, as a journal holding just them would give (for tests of
    /// what is made of counts).
    #[cfg(test)]
    pub fn of_visits(visits: &[visit_journal::Visit]) -> Summary {
        let mut days: BTreeMap<NaiveDate, u64> = BTreeMap::new();
        let mut ips: HashMap<IpAddr, u64> = HashMap::new();
        for v in visits {
            *days.entry(v.at.date_naive()).or_insert(0) += 1;
            *ips.entry(v.ip).or_insert(0) += 1;
        }
        let mut list: Vec<(IpAddr, u64)> = ips.into_iter().collect();
        list.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let distinct = list.len() as u64;
        list.truncate(TOP_IPS);
        let listed: u64 = list.iter().map(|(_, c)| c).sum();
        Summary {
            visits: visits.len() as u64,
            corrupt_lines: 0,
            days: days.into_iter().rev().collect(),
            other_ips_visits: visits.len() as u64 - listed,
            ips: list,
            distinct_ips: Some(distinct),
            ips_exact: true,
        }
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

/// A peer's damaged files from its `/stats?scope=local` answer (`[]` when it says nothing of
/// them: a peer of an older version).
pub fn damaged_from_json(v: &serde_json::Value) -> Option<Vec<DamagedFile>> {
    let Some(list) = v.get("damaged") else {
        return Some(Vec::new());
    };
    list.as_array()?
        .iter()
        .map(|d| {
            Some(DamagedFile {
                file: d.get("file")?.as_str()?.to_string(),
                error: d.get("error")?.as_str()?.to_string(),
            })
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
    /// Its files that could not be counted.
    pub damaged: Vec<DamagedFile>,
}

/// The `/stats` JSON: `replicas` sorted by name, their total, the missing peers, and every
/// replica's damaged files.
pub fn render(
    replica: &str,
    scope: &str,
    mut replicas: Vec<ReplicaStats>,
    missing: &[Missing],
) -> String {
    replicas.sort_by(|a, b| a.name.cmp(&b.name));
    let total = Summary::total(replicas.iter().map(|r| &r.summary));
    let days: usize = replicas.iter().map(|r| r.summary.days.len()).sum();
    let mut out = String::with_capacity(4096 + 80 * days);
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
    let mut damaged = json::Array::one_per_line(o.key_on_new_line("damaged"));
    for r in &replicas {
        for d in &r.damaged {
            damaged
                .object()
                .str("replica", &r.name)
                .str("file", &d.file)
                .str("error", &d.error)
                .end();
        }
    }
    damaged.end();
    o.end();
    out.push('\n');
    out
}

/// The `/stats` CSV ([`crate::csv`]): its header row, then a `day,replica,count` row per
/// replica and day with visits (every day), days ascending, replicas by name within a day.
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
    use visit_journal::Visit;

    fn visit(s: &str) -> Visit {
        s.parse().unwrap()
    }

    fn summary_of(lines: &[&str]) -> Summary {
        let visits: Vec<Visit> = lines.iter().map(|l| visit(l)).collect();
        Summary::of_visits(&visits)
    }

    #[test]
    fn a_journals_counts_become_the_answer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("visits.txt");
        let journal = visit_journal::Journal::open(&path).unwrap();
        for line in [
            "2026-11-25T23:59:59.000+03:00 - 10.0.0.1",
            "2026-11-26T00:00:00.000+03:00 - 10.0.0.2",
            "2026-11-26T10:00:00.000+03:00 - 10.0.0.1",
            "2026-11-26T10:00:00.000Z - ::1",
        ] {
            journal.append(&visit(line)).unwrap();
        }
        let s = Summary::of(&journal.counts().unwrap());
        assert_eq!((s.visits, s.corrupt_lines), (4, 0));
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
    fn every_day_is_listed_however_many() {
        let first = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();
        let lines: Vec<String> = (0..1000)
            .map(|i| format!("{}T10:00:00.000Z - 10.0.0.1", first + chrono::Days::new(i)))
            .collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let s = summary_of(&refs);
        assert_eq!(s.days.len(), 1000);
        let total = Summary::total([&s, &s]);
        assert_eq!(total.days.len(), 1000);
        assert_eq!(total.days.iter().map(|d| d.1).sum::<u64>(), total.visits);
        let r = ReplicaStats {
            name: "r".into(),
            address: "127.0.0.1:1".into(),
            summary: s,
            damaged: Vec::new(),
        };
        let csv = render_csv(std::slice::from_ref(&r));
        assert_eq!(csv.lines().count(), 1001);
        let v: serde_json::Value =
            serde_json::from_str(&render("r", "local", vec![r], &[])).unwrap();
        let back = Summary::from_json(&v["replicas"][0]).unwrap();
        assert_eq!(back.days.len(), 1000);
    }

    #[test]
    fn totals_sum_replicas_and_say_when_they_are_exact() {
        let a = summary_of(&[
            "2026-11-26T10:00:00.000Z - 10.0.0.1",
            "2026-11-26T10:00:01.000Z - 10.0.0.2",
        ]);
        let b = summary_of(&[
            "2026-11-26T11:00:00.000Z - 10.0.0.1",
            "2026-11-27T11:00:00.000Z - 10.0.0.1",
        ]);
        let total = Summary::total([&a, &b]);
        assert_eq!(total.visits, 4);
        assert_eq!(total.days.len(), 2);
        assert_eq!(total.days[0].1, 1);
        assert_eq!(total.days[1].1, 3);
        assert_eq!(total.ips[0], ("10.0.0.1".parse().unwrap(), 3));
        assert_eq!((total.distinct_ips, total.ips_exact), (Some(2), true));
        let mut partial = b.clone();
        partial.other_ips_visits = 1;
        let total = Summary::total([&a, &partial]);
        assert_eq!((total.distinct_ips, total.ips_exact), (None, false));
    }

    #[test]
    fn json_round_trips_and_renders_every_part() {
        let s = summary_of(&[
            "2026-11-26T10:00:00.000Z - 10.0.0.1",
            "2026-11-26T10:00:00.000Z - fd00::1",
        ]);
        let damaged = vec![DamagedFile {
            file: "visits.txt.summary".into(),
            error: "line 2 at byte 19: \"x\"".into(),
        }];
        let text = render(
            "r0",
            "cluster",
            vec![ReplicaStats {
                name: "r0".into(),
                address: "127.0.0.1:1".into(),
                summary: s.clone(),
                damaged: damaged.clone(),
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
        assert_eq!(v["damaged"][0]["replica"], "r0");
        assert_eq!(v["damaged"][0]["file"], "visits.txt.summary");
        assert_eq!(damaged_from_json(&v), Some(damaged));
        assert_eq!(damaged_from_json(&serde_json::json!({})), Some(Vec::new()));
        assert_eq!(
            damaged_from_json(&serde_json::json!({"damaged": [1]})),
            None
        );
        assert_eq!(Summary::from_json(&serde_json::json!({"visits": 1})), None);
    }

    #[test]
    fn csv_rows_are_sorted_by_day_then_replica() {
        let rs = |name: &str, lines: &[&str]| ReplicaStats {
            name: name.into(),
            address: "127.0.0.1:1".into(),
            summary: summary_of(lines),
            damaged: Vec::new(),
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
