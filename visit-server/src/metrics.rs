//! The server's metrics: which exist, what they count, and `GET /metrics`, which renders each
//! family with its own small function over [`crate::exposition`].
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
//! | `visit_server_json_skipped_lines_total` | counter | corrupt lines left out of `?format=json` and `?format=csv` |
//! | `visit_server_ready`, `visit_server_journal_poisoned`, `visit_server_journal_unwritable` | gauge | readiness and why not |
//! | `visit_server_visits_streams_active` | gauge | `/visits` responses being streamed |
//! | `visit_server_fanouts_total{endpoint,result}` | counter | cluster views (`endpoint` `visits`, `stats` or `dashboard`), `complete` or `partial` |
//! | `visit_server_peer_answers_total{result}` | counter | peers asked by cluster views: `ok`, or why missing (`timeout`, `refused`, `dns`, `too_large`, `status`, `bad_response`, `too_many_peers`, `unauthorized`, `other`) |
//! | `visit_server_fanout_duration_seconds` | histogram | time to gather a cluster view's peers |
//! | `visit_server_fanouts_active` | gauge | cluster views in progress |
//! | `visit_server_disk_available_bytes` | gauge | free space for the journal's file system |
//! | `visit_server_disk_size_bytes` | gauge | the size of the journal's file system (with the free space, how full its volume is) |
//! | `visit_journal_records_total`, `_batches_total`, `_fsyncs_total`, `_bytes_total`, `_failed_batches_total`, `_failed_fsyncs_total`, `_repaired_bytes_total` | counter | the journal handle's [`Stats`] |
//! | `visit_journal_largest_batch` | gauge | most records one fsync has carried |
//! | `visit_journal_batch_records` | histogram | records per committed batch ([`Stats::batch_records`]): buckets `le` 1, 2, 4, … 1024; `_sum` is `visit_journal_records_total`, `_count` the batches |
//! | `visit_journal_live_bytes`, `visit_journal_sealed_bytes`, `visit_journal_sealed_segments` | gauge | the live file's size and the sealed segments' total size and number, as the handle last saw them under the lock (after its last batch, rotation or retention) |
//! | `visit_journal_rotations_total`, `_failed_rotations_total`, `_retired_segments_total`, `_failed_retentions_total` | counter | rotations and retirements (`--rotate-size`, `--retain-size`, `--retain-days`), and the failures of either (never a failed visit: they are logged and retried) |
//! | `visit_journal_damaged_files` | gauge | files of the journal's history that could not be counted or were set aside (a damaged summary, a file with a segment's name that cannot be read, `<name>.damaged`), as listed when scraped (CONTRACT §10); absent if the directory cannot be listed |

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use visit_journal::Stats;

use crate::exposition::{self, Counter, Histogram, label};
use crate::peers::ErrorKind;

label! {
    /// A response's status, for `visit_server_requests_total{status}`: the codes this server
    /// sends, and `other` for any code not listed.
    pub enum Status {
        Ok = "200",
        BadRequest = "400",
        Unauthorized = "401",
        NotFound = "404",
        MethodNotAllowed = "405",
        RequestTimeout = "408",
        ContentTooLarge = "413",
        HeadersTooLarge = "431",
        InternalError = "500",
        Unavailable = "503",
        VersionNotSupported = "505",
        Other = "other",
    }
}

impl Status {
    /// The label of a status code.
    pub fn of(code: u16) -> Status {
        Status::ALL
            .iter()
            .copied()
            .find(|s| s.as_str().parse() == Ok(code))
            .unwrap_or(Status::Other)
    }
}

label! {
    /// Why an append failed, for `visit_server_append_errors_total{kind}`.
    pub enum AppendError {
        /// ENOSPC, EDQUOT or EFBIG: rolled back, retried once space is back.
        OutOfSpace = "out_of_space",
        /// A failed fsync: the handle refuses appends until reopened.
        Poisoned = "poisoned",
        /// The file lock was not granted in time.
        Locked = "locked",
        /// The file ends in something that is not a torn record.
        Corrupt = "corrupt",
        /// Any other I/O error.
        Other = "other",
    }
}

impl AppendError {
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
}

label! {
    /// How a journal reopen ended, for `visit_server_journal_reopens_total{result}`.
    pub enum Reopen {
        Ok = "ok",
        Failed = "failed",
    }
}

label! {
    /// The endpoints that fan out, for `visit_server_fanouts_total{endpoint}`.
    pub enum Endpoint {
        Visits = "visits",
        Stats = "stats",
        Dashboard = "dashboard",
    }
}

label! {
    /// Whether every replica answered a cluster view, for `visit_server_fanouts_total{result}`.
    pub enum Completeness {
        Complete = "complete",
        Partial = "partial",
    }
}

/// The server's counters. One per process, shared by every worker.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Counter<Status>,
    visits: AtomicU64,
    append_errors: Counter<AppendError>,
    append_latency: Histogram,
    reopens: Counter<Reopen>,
    json_skipped: AtomicU64,
    fanouts: Counter<(Endpoint, Completeness)>,
    /// Peers that answered a cluster view (`result="ok"`).
    peers_answered: AtomicU64,
    /// Peers missing from a cluster view, by why.
    peers_missing: Counter<ErrorKind>,
    fanout_latency: Histogram,
}

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
    /// The size of the journal's file system in bytes, if it could be read.
    pub disk_size: Option<u64>,
    /// The journal handle's counters.
    pub journal: Stats,
    /// Damaged or set-aside files of the journal's history, if they could be listed.
    pub damaged_files: Option<u64>,
}

impl Metrics {
    /// Counts a response.
    pub fn request(&self, status: u16) {
        self.requests.inc(Status::of(status));
    }

    /// Counts an acknowledged visit and how long its append took.
    pub fn visit_recorded(&self, took: Duration) {
        self.visits.fetch_add(1, Relaxed);
        self.append_latency.observe(took);
    }

    /// Counts a refused append and how long it took to fail.
    pub fn append_failed(&self, kind: AppendError, took: Duration) {
        self.append_errors.inc(kind);
        self.append_latency.observe(took);
    }

    /// Counts a journal reopen.
    pub fn reopened(&self, ok: bool) {
        self.reopens
            .inc(if ok { Reopen::Ok } else { Reopen::Failed });
    }

    /// Counts corrupt lines left out of a JSON response.
    pub fn json_skipped(&self, n: u64) {
        self.json_skipped.fetch_add(n, Relaxed);
    }

    /// Counts a cluster view: how many peers answered, why the others are missing, and how
    /// long gathering them took.
    pub fn fanout(
        &self,
        endpoint: Endpoint,
        answered: usize,
        missing: impl Iterator<Item = ErrorKind>,
        took: Duration,
    ) {
        let mut completeness = Completeness::Complete;
        for kind in missing {
            completeness = Completeness::Partial;
            self.peers_missing.inc(kind);
        }
        self.peers_answered.fetch_add(answered as u64, Relaxed);
        self.fanouts.inc((endpoint, completeness));
        self.fanout_latency.observe(took);
    }

    /// Visits acknowledged so far.
    pub fn visits(&self) -> u64 {
        self.visits.load(Relaxed)
    }

    /// The Prometheus text exposition (format 0.0.4), one family after the other.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(8192);
        let out = &mut out;
        self.requests.render(
            out,
            "visit_server_requests_total",
            "HTTP responses by status code.",
            &["status"],
        );
        exposition::counter(
            out,
            "visit_server_visits_recorded_total",
            "Visits durably recorded and acknowledged with 200.",
            self.visits.load(Relaxed),
        );
        self.append_errors.render(
            out,
            "visit_server_append_errors_total",
            "Appends the journal refused (answered 503), by cause.",
            &["kind"],
        );
        self.append_latency.render(
            out,
            "visit_server_append_duration_seconds",
            "Time spent in Journal::append (write and fsync, shared by a group commit).",
        );
        self.reopens.render(
            out,
            "visit_server_journal_reopens_total",
            "Journal reopens after a failed fsync, by result.",
            &["result"],
        );
        exposition::counter(
            out,
            "visit_server_json_skipped_lines_total",
            "Corrupt journal lines left out of /visits?format=json and ?format=csv responses.",
            self.json_skipped.load(Relaxed),
        );
        self.fanouts.render(
            out,
            "visit_server_fanouts_total",
            "Cluster views (?scope=cluster), by endpoint and whether a replica was missing.",
            &["endpoint", "result"],
        );
        self.render_peer_answers(out);
        self.fanout_latency.render(
            out,
            "visit_server_fanout_duration_seconds",
            "Time to gather a cluster view's peers (name lookups, connections, answers).",
        );
        render_health(out, g);
        render_journal(out, &g.journal);
        if let Some(damaged) = g.damaged_files {
            exposition::gauge(
                out,
                "visit_journal_damaged_files",
                "Files of the journal's history that could not be counted or were set aside \
                 (see /stats damaged).",
                damaged,
            );
        }
        std::mem::take(out)
    }

    /// `visit_server_peer_answers_total{result}`: `ok`, then each reason a peer is missing.
    fn render_peer_answers(&self, out: &mut String) {
        let name = "visit_server_peer_answers_total";
        exposition::family(
            out,
            name,
            "counter",
            "Peers asked by cluster views: ok, or why they are missing.",
        );
        // Writing into a String cannot fail.
        let _ = writeln!(
            out,
            "{name}{{result=\"ok\"}} {}",
            self.peers_answered.load(Relaxed)
        );
        self.peers_missing.samples(out, name, &["result"]);
    }
}

/// The gauges of readiness, streams and free space.
fn render_health(out: &mut String, g: &Gauges) {
    exposition::gauge(
        out,
        "visit_server_ready",
        "1 if /readyz answers 200.",
        u64::from(g.ready),
    );
    exposition::gauge(
        out,
        "visit_server_journal_poisoned",
        "1 if the journal refuses appends until it is reopened (failed fsync).",
        u64::from(g.poisoned),
    );
    exposition::gauge(
        out,
        "visit_server_journal_unwritable",
        "1 if the last append or write probe failed (e.g. disk full).",
        u64::from(g.unwritable),
    );
    exposition::gauge(
        out,
        "visit_server_visits_streams_active",
        "/visits responses being streamed.",
        g.streams as u64,
    );
    exposition::gauge(
        out,
        "visit_server_fanouts_active",
        "Cluster views in progress.",
        g.fanouts as u64,
    );
    if let Some(free) = g.disk_available {
        exposition::gauge(
            out,
            "visit_server_disk_available_bytes",
            "Bytes available to the server on the journal's file system.",
            free,
        );
    }
    if let Some(size) = g.disk_size {
        exposition::gauge(
            out,
            "visit_server_disk_size_bytes",
            "Size of the journal's file system in bytes.",
            size,
        );
    }
}

/// The journal handle's own counters ([`Stats`]).
fn render_journal(out: &mut String, s: &Stats) {
    exposition::counter(
        out,
        "visit_journal_records_total",
        "Records written and fsynced by this process.",
        s.records,
    );
    exposition::counter(
        out,
        "visit_journal_batches_total",
        "Group-commit batches written (one write each).",
        s.batches,
    );
    exposition::counter(
        out,
        "visit_journal_fsyncs_total",
        "Successful fdatasync calls.",
        s.syncs,
    );
    exposition::counter(
        out,
        "visit_journal_bytes_total",
        "Bytes written and fsynced.",
        s.bytes,
    );
    exposition::gauge(
        out,
        "visit_journal_largest_batch",
        "The most records one batch has carried.",
        s.largest_batch,
    );
    exposition::count_histogram(
        out,
        "visit_journal_batch_records",
        "Records per committed group-commit batch (one write and one fsync each).",
        &Stats::BATCH_RECORDS_BOUNDS,
        &s.batch_records,
        s.records,
    );
    exposition::counter(
        out,
        "visit_journal_failed_batches_total",
        "Batches that failed and were rolled back, or failed to sync.",
        s.failed_batches,
    );
    exposition::counter(
        out,
        "visit_journal_failed_fsyncs_total",
        "Failed fdatasync calls (each poisons the handle).",
        s.failed_syncs,
    );
    exposition::counter(
        out,
        "visit_journal_repaired_bytes_total",
        "Bytes of torn tails and power-loss debris cut from the end of the file.",
        s.repaired_bytes,
    );
    exposition::gauge(
        out,
        "visit_journal_live_bytes",
        "Size of the live journal file after this server's last batch or rotation.",
        s.live_bytes,
    );
    exposition::gauge(
        out,
        "visit_journal_sealed_bytes",
        "Total size of the sealed segments on disk, as last seen under the lock.",
        s.sealed_bytes,
    );
    exposition::gauge(
        out,
        "visit_journal_sealed_segments",
        "Sealed segments on disk, as last seen under the lock.",
        s.sealed_segments,
    );
    exposition::counter(
        out,
        "visit_journal_rotations_total",
        "Live files sealed as segments by this server.",
        s.rotations,
    );
    exposition::counter(
        out,
        "visit_journal_failed_rotations_total",
        "Rotations with a step that failed (retried or finished; no visit lost).",
        s.failed_rotations,
    );
    exposition::counter(
        out,
        "visit_journal_retired_segments_total",
        "Sealed segments counted into the summary and deleted by this server.",
        s.retired_segments,
    );
    exposition::counter(
        out,
        "visit_journal_failed_retentions_total",
        "Retention runs that failed and were retried (appends did not fail).",
        s.failed_retentions,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::PeerError;

    fn gauges() -> Gauges {
        Gauges {
            ready: true,
            poisoned: false,
            unwritable: false,
            streams: 2,
            fanouts: 1,
            disk_available: Some(1 << 30),
            disk_size: Some(4 << 30),
            journal: Stats::default(),
            damaged_files: Some(0),
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
        m.fanout(
            Endpoint::Visits,
            2,
            [].into_iter(),
            Duration::from_millis(3),
        );
        m.fanout(
            Endpoint::Stats,
            1,
            [PeerError::Timeout, PeerError::Refused]
                .iter()
                .map(PeerError::kind),
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
    fn batch_sizes_are_a_cumulative_histogram_of_records() {
        let mut g = gauges();
        // Batches of 1, 1, 3, 16 and 2000 records.
        g.journal.batch_records[0] = 2;
        g.journal.batch_records[2] = 1;
        g.journal.batch_records[4] = 1;
        g.journal.batch_records[11] = 1;
        g.journal.records = 2021;
        let t = Metrics::default().render(&g);
        let h = "visit_journal_batch_records";
        for (le, n) in [
            ("1", "2"),
            ("2", "2"),
            ("4", "3"),
            ("8", "3"),
            ("16", "4"),
            ("1024", "4"),
            ("+Inf", "5"),
        ] {
            assert_eq!(
                sample(&t, &format!("{h}_bucket{{le=\"{le}\"}}")),
                n,
                "le={le}"
            );
        }
        assert_eq!(sample(&t, &format!("{h}_sum")), "2021");
        assert_eq!(sample(&t, &format!("{h}_count")), "5");
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
        assert_eq!(sample(&t, "visit_server_disk_size_bytes"), "4294967296");
        assert_eq!(sample(&t, "visit_server_visits_streams_active"), "2");
        assert_eq!(sample(&t, "visit_server_fanouts_active"), "1");
        // Every sample line is `name{labels} value` with a numeric value.
        for l in t.lines().filter(|l| !l.starts_with('#')) {
            let v = l.rsplit(' ').next().unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
    }

    /// The whole exposition, byte for byte as scrapers, alerts and the README know it
    /// (`testdata/metrics.prom` was rendered by the code before the labelled counters).
    #[test]
    fn render_is_byte_for_byte_stable() {
        let m = Metrics::default();
        for status in [200, 404, 418, 503] {
            m.request(status);
        }
        m.visit_recorded(Duration::from_micros(80));
        m.visit_recorded(Duration::from_millis(3));
        m.append_failed(AppendError::OutOfSpace, Duration::from_secs(9));
        m.append_failed(AppendError::Locked, Duration::from_millis(2));
        m.reopened(true);
        m.reopened(false);
        m.reopened(false);
        m.json_skipped(4);
        m.fanout(
            Endpoint::Visits,
            2,
            [].into_iter(),
            Duration::from_millis(3),
        );
        let missing = [
            PeerError::Timeout,
            PeerError::Refused,
            PeerError::Other("x".into()),
        ];
        m.fanout(
            Endpoint::Stats,
            1,
            missing.iter().map(PeerError::kind),
            Duration::from_secs(1),
        );
        let g = Gauges {
            unwritable: true,
            ..gauges()
        };
        let want = include_str!("testdata/metrics.prom");
        assert_eq!(m.render(&g), want);
        let disk = "# HELP visit_server_disk_available_bytes Bytes available to the server on \
                    the journal's file system.\n\
                    # TYPE visit_server_disk_available_bytes gauge\n\
                    visit_server_disk_available_bytes 1073741824\n\
                    # HELP visit_server_disk_size_bytes Size of the journal's file system in \
                    bytes.\n\
                    # TYPE visit_server_disk_size_bytes gauge\n\
                    visit_server_disk_size_bytes 4294967296\n";
        let g = Gauges {
            disk_available: None,
            disk_size: None,
            ..g
        };
        assert_eq!(m.render(&g), want.replace(disk, ""));
    }
}
