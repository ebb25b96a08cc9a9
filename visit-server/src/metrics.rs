//! Counters kept in atomics, rendered in the Prometheus text format for `GET /metrics`.
//!
//! Updating a metric is a relaxed atomic add: no lock on the request path. The journal's own
//! counters ([`visit_journal::Stats`]) are read when `/metrics` is scraped, not copied.
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `visit_server_requests_total{status}` | counter | responses by status code |
//! | `visit_server_visits_recorded_total` | counter | visits acknowledged (200 to `GET /`) |
//! | `visit_server_append_errors_total{kind}` | counter | appends refused: `out_of_space`, `poisoned`, `locked`, `corrupt`, `other` |
//! | `visit_server_append_duration_seconds` | histogram | time in `Journal::append` (write + fsync, shared by a batch) |
//! | `visit_server_journal_reopens_total{result}` | counter | reopens after a failed fsync |
//! | `visit_server_json_skipped_lines_total` | counter | corrupt lines left out of `?format=json` |
//! | `visit_server_ready`, `visit_server_journal_poisoned`, `visit_server_journal_unwritable` | gauge | readiness and why not |
//! | `visit_server_visits_streams_active` | gauge | `/visits` responses being streamed |
//! | `visit_server_fanouts_total{endpoint,result}` | counter | cluster views (`endpoint` `visits` or `stats`), `complete` or `partial` |
//! | `visit_server_peer_answers_total{result}` | counter | peers asked by cluster views: `ok`, or why missing (`timeout`, `refused`, `dns`, `too_large`, `status`, `bad_response`, `too_many_peers`, `other`) |
//! | `visit_server_fanout_duration_seconds` | histogram | time to gather a cluster view's peers |
//! | `visit_server_fanouts_active` | gauge | cluster views in progress |
//! | `visit_server_disk_available_bytes` | gauge | free space for the journal's file system |
//! | `visit_journal_records_total`, `_batches_total`, `_fsyncs_total`, `_bytes_total`, `_failed_batches_total`, `_failed_fsyncs_total`, `_repaired_bytes_total` | counter | the journal handle's [`Stats`] |
//! | `visit_journal_largest_batch` | gauge | most records one fsync has carried |
//! | `visit_journal_live_bytes`, `visit_journal_sealed_bytes`, `visit_journal_sealed_segments` | gauge | the live file's size and the sealed segments' total size and number, as the handle last saw them under the lock (after its last batch, rotation or retention) |
//! | `visit_journal_rotations_total`, `_failed_rotations_total`, `_retired_segments_total`, `_failed_retentions_total` | counter | rotations and retirements (`--rotate-size`, `--retain-size`, `--retain-days`), and the failures of either (never a failed visit: they are logged and retried) |

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use visit_journal::Stats;

use crate::peers::PeerError;

/// Status codes counted individually; anything else is counted as `other`.
const STATUSES: [u16; 11] = [200, 400, 404, 405, 408, 413, 431, 500, 503, 505, 0];

/// Why an append failed, for `visit_server_append_errors_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendError {
    /// ENOSPC, EDQUOT or EFBIG: rolled back, retried once space is back.
    OutOfSpace,
    /// A failed fsync: the handle refuses appends until reopened.
    Poisoned,
    /// The file lock was not granted in time.
    Locked,
    /// The file ends in something that is not a torn record.
    Corrupt,
    /// Any other I/O error.
    Other,
}

impl AppendError {
    const ALL: [AppendError; 5] = [
        AppendError::OutOfSpace,
        AppendError::Poisoned,
        AppendError::Locked,
        AppendError::Corrupt,
        AppendError::Other,
    ];

    /// Classifies a journal error.
    pub fn of(e: &visit_journal::Error) -> AppendError {
        if e.is_out_of_space() {
            AppendError::OutOfSpace
        } else if e.is_poisoned() {
            AppendError::Poisoned
        } else if e.is_locked() {
            AppendError::Locked
        } else if e.is_corrupt() {
            AppendError::Corrupt
        } else {
            AppendError::Other
        }
    }

    fn label(self) -> &'static str {
        match self {
            AppendError::OutOfSpace => "out_of_space",
            AppendError::Poisoned => "poisoned",
            AppendError::Locked => "locked",
            AppendError::Corrupt => "corrupt",
            AppendError::Other => "other",
        }
    }
}

/// Upper bounds of the append-latency buckets, in microseconds: 100 µs (one fast fsync) to
/// 5 s (the lock timeout).
const BUCKETS_US: [u64; 15] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000,
];

/// A latency histogram: per-bucket counts (not cumulative; summed when rendered).
#[derive(Debug, Default)]
struct Histogram {
    /// `counts[i]` counts observations in `(BUCKETS_US[i-1], BUCKETS_US[i]]`; the last slot is
    /// `+Inf`.
    counts: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKETS_US.partition_point(|&b| b < us);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// Writes the histogram as a metric family, with cumulative buckets.
    fn render(&self, out: &mut String, name: &str, help: &str) {
        let n = family(out, name, "histogram", help);
        let mut cumulative = 0;
        for (i, b) in BUCKETS_US.iter().enumerate() {
            cumulative += self.counts[i].load(Relaxed);
            let _ = writeln!(out, "{n}_bucket{{le=\"{}\"}} {cumulative}", *b as f64 / 1e6);
        }
        cumulative += self.counts[BUCKETS_US.len()].load(Relaxed);
        let _ = writeln!(out, "{n}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{n}_sum {}", self.sum_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{n}_count {cumulative}");
    }
}

/// The server's counters. One per process, shared by every worker.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Indexed like [`STATUSES`]; the last slot is `other`.
    requests: [AtomicU64; STATUSES.len()],
    visits: AtomicU64,
    append_errors: [AtomicU64; AppendError::ALL.len()],
    append_latency: Histogram,
    reopens_ok: AtomicU64,
    reopens_failed: AtomicU64,
    json_skipped: AtomicU64,
    /// `[endpoint][partial]`, endpoints as in [`FANOUT_ENDPOINTS`].
    fanouts: [[AtomicU64; 2]; 2],
    /// `ok`, then the kinds of [`PeerError::KINDS`].
    peer_answers: [AtomicU64; PeerError::KINDS.len() + 1],
    fanout_latency: Histogram,
}

/// The endpoints that fan out.
const FANOUT_ENDPOINTS: [&str; 2] = ["visits", "stats"];

/// Values read when `/metrics` is scraped.
#[derive(Debug, Clone, Copy)]
pub struct Gauges {
    /// What `/readyz` would answer.
    pub ready: bool,
    /// The journal refuses appends until reopened.
    pub poisoned: bool,
    /// The last append or probe failed, and no write has succeeded since.
    pub unwritable: bool,
    /// `/visits` responses in progress.
    pub streams: usize,
    /// Cluster views in progress.
    pub fanouts: usize,
    /// Free bytes for the journal's file system, if they could be read.
    pub disk_available: Option<u64>,
    /// The journal handle's counters.
    pub journal: Stats,
}

impl Metrics {
    /// Counts a response.
    pub fn request(&self, status: u16) {
        let i = STATUSES[..STATUSES.len() - 1]
            .iter()
            .position(|&s| s == status)
            .unwrap_or(STATUSES.len() - 1);
        self.requests[i].fetch_add(1, Relaxed);
    }

    /// Counts an acknowledged visit and how long its append took.
    pub fn visit_recorded(&self, took: Duration) {
        self.visits.fetch_add(1, Relaxed);
        self.append_latency.observe(took);
    }

    /// Counts a refused append and how long it took to fail.
    pub fn append_failed(&self, kind: AppendError, took: Duration) {
        let i = AppendError::ALL
            .iter()
            .position(|&k| k == kind)
            .unwrap_or(0);
        self.append_errors[i].fetch_add(1, Relaxed);
        self.append_latency.observe(took);
    }

    /// Counts a journal reopen.
    pub fn reopened(&self, ok: bool) {
        if ok {
            &self.reopens_ok
        } else {
            &self.reopens_failed
        }
        .fetch_add(1, Relaxed);
    }

    /// Counts corrupt lines left out of a JSON response.
    pub fn json_skipped(&self, n: u64) {
        self.json_skipped.fetch_add(n, Relaxed);
    }

    /// Counts a cluster view: how many peers answered, why the others are missing, and how
    /// long gathering them took.
    pub fn fanout<'a>(
        &self,
        endpoint: &str,
        answered: usize,
        missing: impl Iterator<Item = &'a PeerError>,
        took: Duration,
    ) {
        let e = FANOUT_ENDPOINTS
            .iter()
            .position(|&n| n == endpoint)
            .unwrap_or(0);
        let mut partial = 0;
        for error in missing {
            partial = 1;
            let kind = error.kind();
            let i = PeerError::KINDS
                .iter()
                .position(|&k| k == kind)
                .unwrap_or(PeerError::KINDS.len() - 1);
            self.peer_answers[i + 1].fetch_add(1, Relaxed);
        }
        self.peer_answers[0].fetch_add(answered as u64, Relaxed);
        self.fanouts[e][partial].fetch_add(1, Relaxed);
        self.fanout_latency.observe(took);
    }

    /// Visits acknowledged so far.
    pub fn visits(&self) -> u64 {
        self.visits.load(Relaxed)
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, g: &Gauges) -> String {
        // Writing into a String cannot fail: the `fmt::Result`s below are ignored.
        let mut out = String::with_capacity(4096);
        let out = &mut out;

        let n = family(
            out,
            "visit_server_requests_total",
            "counter",
            "HTTP responses by status code.",
        );
        for (i, s) in STATUSES.iter().enumerate() {
            let count = self.requests[i].load(Relaxed);
            if *s == 0 {
                let _ = writeln!(out, "{n}{{status=\"other\"}} {count}");
            } else {
                let _ = writeln!(out, "{n}{{status=\"{s}\"}} {count}");
            }
        }

        single(
            out,
            "visit_server_visits_recorded_total",
            "counter",
            "Visits durably recorded and acknowledged with 200.",
            self.visits.load(Relaxed),
        );

        let n = family(
            out,
            "visit_server_append_errors_total",
            "counter",
            "Appends the journal refused (answered 503), by cause.",
        );
        for (i, k) in AppendError::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "{n}{{kind=\"{}\"}} {}",
                k.label(),
                self.append_errors[i].load(Relaxed)
            );
        }

        self.append_latency.render(
            out,
            "visit_server_append_duration_seconds",
            "Time spent in Journal::append (write and fsync, shared by a group commit).",
        );

        let n = family(
            out,
            "visit_server_journal_reopens_total",
            "counter",
            "Journal reopens after a failed fsync, by result.",
        );
        let _ = writeln!(
            out,
            "{n}{{result=\"ok\"}} {}\n{n}{{result=\"failed\"}} {}",
            self.reopens_ok.load(Relaxed),
            self.reopens_failed.load(Relaxed)
        );

        single(
            out,
            "visit_server_json_skipped_lines_total",
            "counter",
            "Corrupt journal lines left out of /visits?format=json responses.",
            self.json_skipped.load(Relaxed),
        );

        let n = family(
            out,
            "visit_server_fanouts_total",
            "counter",
            "Cluster views (?scope=cluster), by endpoint and whether a replica was missing.",
        );
        for (e, endpoint) in FANOUT_ENDPOINTS.iter().enumerate() {
            for (p, result) in ["complete", "partial"].iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{n}{{endpoint=\"{endpoint}\",result=\"{result}\"}} {}",
                    self.fanouts[e][p].load(Relaxed)
                );
            }
        }
        let n = family(
            out,
            "visit_server_peer_answers_total",
            "counter",
            "Peers asked by cluster views: ok, or why they are missing.",
        );
        for (i, result) in std::iter::once("ok").chain(PeerError::KINDS).enumerate() {
            let _ = writeln!(
                out,
                "{n}{{result=\"{result}\"}} {}",
                self.peer_answers[i].load(Relaxed)
            );
        }
        self.fanout_latency.render(
            out,
            "visit_server_fanout_duration_seconds",
            "Time to gather a cluster view's peers (name lookups, connections, answers).",
        );

        for (name, help, value) in [
            (
                "visit_server_ready",
                "1 if /readyz answers 200.",
                u64::from(g.ready),
            ),
            (
                "visit_server_journal_poisoned",
                "1 if the journal refuses appends until it is reopened (failed fsync).",
                u64::from(g.poisoned),
            ),
            (
                "visit_server_journal_unwritable",
                "1 if the last append or write probe failed (e.g. disk full).",
                u64::from(g.unwritable),
            ),
            (
                "visit_server_visits_streams_active",
                "/visits responses being streamed.",
                g.streams as u64,
            ),
            (
                "visit_server_fanouts_active",
                "Cluster views in progress.",
                g.fanouts as u64,
            ),
        ] {
            single(out, name, "gauge", help, value);
        }
        if let Some(free) = g.disk_available {
            single(
                out,
                "visit_server_disk_available_bytes",
                "gauge",
                "Bytes available to the server on the journal's file system.",
                free,
            );
        }

        let s = &g.journal;
        for (name, kind, help, value) in [
            (
                "visit_journal_records_total",
                "counter",
                "Records written and fsynced by this process.",
                s.records,
            ),
            (
                "visit_journal_batches_total",
                "counter",
                "Group-commit batches written (one write each).",
                s.batches,
            ),
            (
                "visit_journal_fsyncs_total",
                "counter",
                "Successful fdatasync calls.",
                s.syncs,
            ),
            (
                "visit_journal_bytes_total",
                "counter",
                "Bytes written and fsynced.",
                s.bytes,
            ),
            (
                "visit_journal_largest_batch",
                "gauge",
                "The most records one batch has carried.",
                s.largest_batch,
            ),
            (
                "visit_journal_failed_batches_total",
                "counter",
                "Batches that failed and were rolled back, or failed to sync.",
                s.failed_batches,
            ),
            (
                "visit_journal_failed_fsyncs_total",
                "counter",
                "Failed fdatasync calls (each poisons the handle).",
                s.failed_syncs,
            ),
            (
                "visit_journal_repaired_bytes_total",
                "counter",
                "Bytes of torn tails and power-loss debris cut from the end of the file.",
                s.repaired_bytes,
            ),
            (
                "visit_journal_live_bytes",
                "gauge",
                "Size of the live journal file after this server's last batch or rotation.",
                s.live_bytes,
            ),
            (
                "visit_journal_sealed_bytes",
                "gauge",
                "Total size of the sealed segments on disk, as last seen under the lock.",
                s.sealed_bytes,
            ),
            (
                "visit_journal_sealed_segments",
                "gauge",
                "Sealed segments on disk, as last seen under the lock.",
                s.sealed_segments,
            ),
            (
                "visit_journal_rotations_total",
                "counter",
                "Live files sealed as segments by this server.",
                s.rotations,
            ),
            (
                "visit_journal_failed_rotations_total",
                "counter",
                "Rotations with a step that failed (retried or finished; no visit lost).",
                s.failed_rotations,
            ),
            (
                "visit_journal_retired_segments_total",
                "counter",
                "Sealed segments counted into the summary and deleted by this server.",
                s.retired_segments,
            ),
            (
                "visit_journal_failed_retentions_total",
                "counter",
                "Retention runs that failed and were retried (appends did not fail).",
                s.failed_retentions,
            ),
        ] {
            single(out, name, kind, help, value);
        }
        std::mem::take(out)
    }
}

/// Writes a metric family that has one sample.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let n = family(out, name, kind, help);
    let _ = writeln!(out, "{n} {value}");
}

/// Writes a metric family's `# HELP` and `# TYPE` lines and returns its name.
fn family<'a>(out: &mut String, name: &'a str, kind: &str, help: &str) -> &'a str {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauges() -> Gauges {
        Gauges {
            ready: true,
            poisoned: false,
            unwritable: false,
            streams: 2,
            fanouts: 1,
            disk_available: Some(1 << 30),
            journal: Stats::default(),
        }
    }

    fn sample<'a>(text: &'a str, series: &str) -> &'a str {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    #[test]
    fn counts_requests_by_status() {
        let m = Metrics::default();
        m.request(200);
        m.request(200);
        m.request(404);
        m.request(418);
        let t = m.render(&gauges());
        assert_eq!(
            sample(&t, "visit_server_requests_total{status=\"200\"}"),
            "2"
        );
        assert_eq!(
            sample(&t, "visit_server_requests_total{status=\"404\"}"),
            "1"
        );
        assert_eq!(
            sample(&t, "visit_server_requests_total{status=\"other\"}"),
            "1"
        );
        assert_eq!(
            sample(&t, "visit_server_requests_total{status=\"503\"}"),
            "0"
        );
    }

    #[test]
    fn histogram_is_cumulative_and_counts_failures_too() {
        let m = Metrics::default();
        m.visit_recorded(Duration::from_micros(80));
        m.visit_recorded(Duration::from_micros(100));
        m.visit_recorded(Duration::from_millis(3));
        m.append_failed(AppendError::OutOfSpace, Duration::from_secs(9));
        let t = m.render(&gauges());
        let h = "visit_server_append_duration_seconds";
        assert_eq!(sample(&t, &format!("{h}_bucket{{le=\"0.0001\"}}")), "2");
        assert_eq!(sample(&t, &format!("{h}_bucket{{le=\"0.0025\"}}")), "2");
        assert_eq!(sample(&t, &format!("{h}_bucket{{le=\"0.005\"}}")), "3");
        assert_eq!(sample(&t, &format!("{h}_bucket{{le=\"5\"}}")), "3");
        assert_eq!(sample(&t, &format!("{h}_bucket{{le=\"+Inf\"}}")), "4");
        assert_eq!(sample(&t, &format!("{h}_count")), "4");
        assert_eq!(sample(&t, &format!("{h}_sum")), "9.00318");
        assert_eq!(sample(&t, "visit_server_visits_recorded_total"), "3");
        assert_eq!(
            sample(
                &t,
                "visit_server_append_errors_total{kind=\"out_of_space\"}"
            ),
            "1"
        );
    }

    #[test]
    fn counts_fanouts_and_peer_errors_by_kind() {
        let m = Metrics::default();
        m.fanout("visits", 2, [].iter(), Duration::from_millis(3));
        m.fanout(
            "stats",
            1,
            [PeerError::Timeout, PeerError::Refused].iter(),
            Duration::from_secs(1),
        );
        let t = m.render(&gauges());
        let f = "visit_server_fanouts_total";
        assert_eq!(
            sample(
                &t,
                &format!("{f}{{endpoint=\"visits\",result=\"complete\"}}")
            ),
            "1"
        );
        assert_eq!(
            sample(&t, &format!("{f}{{endpoint=\"stats\",result=\"partial\"}}")),
            "1"
        );
        let p = "visit_server_peer_answers_total";
        assert_eq!(sample(&t, &format!("{p}{{result=\"ok\"}}")), "3");
        assert_eq!(sample(&t, &format!("{p}{{result=\"timeout\"}}")), "1");
        assert_eq!(sample(&t, &format!("{p}{{result=\"refused\"}}")), "1");
        assert_eq!(sample(&t, &format!("{p}{{result=\"dns\"}}")), "0");
        let h = "visit_server_fanout_duration_seconds";
        assert_eq!(sample(&t, &format!("{h}_bucket{{le=\"0.005\"}}")), "1");
        assert_eq!(sample(&t, &format!("{h}_count")), "2");
    }

    #[test]
    fn reports_the_journals_lifetime() {
        let mut g = gauges();
        g.journal.live_bytes = 4000;
        g.journal.sealed_bytes = 8 << 20;
        g.journal.sealed_segments = 2;
        g.journal.rotations = 3;
        g.journal.failed_rotations = 4;
        g.journal.retired_segments = 1;
        g.journal.failed_retentions = 5;
        let t = Metrics::default().render(&g);
        for (series, value) in [
            ("visit_journal_live_bytes", "4000"),
            ("visit_journal_sealed_bytes", "8388608"),
            ("visit_journal_sealed_segments", "2"),
            ("visit_journal_rotations_total", "3"),
            ("visit_journal_failed_rotations_total", "4"),
            ("visit_journal_retired_segments_total", "1"),
            ("visit_journal_failed_retentions_total", "5"),
        ] {
            assert_eq!(sample(&t, series), value, "{series}");
        }
    }

    #[test]
    fn every_family_has_help_and_type_once() {
        let t = Metrics::default().render(&gauges());
        let types: Vec<&str> = t.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let mut names: Vec<&str> = types.iter().map(|l| l.split(' ').nth(2).unwrap()).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate families");
        assert!(n >= 22, "{n}");
        assert_eq!(t.lines().filter(|l| l.starts_with("# HELP")).count(), n);
        assert_eq!(
            sample(&t, "visit_server_disk_available_bytes"),
            "1073741824"
        );
        assert_eq!(sample(&t, "visit_server_visits_streams_active"), "2");
        assert_eq!(sample(&t, "visit_server_fanouts_active"), "1");
        // Every sample line is `name{labels} value` with a numeric value.
        for l in t.lines().filter(|l| !l.starts_with('#')) {
            let v = l.rsplit(' ').next().unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
    }
}
