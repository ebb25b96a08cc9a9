//! `GET /dashboard`: one HTML page that shows the counts `/stats` computes, for people.
//!
//! The page is rendered here from the replicas' [`Summary`]s (this replica's, or every
//! replica's when peers are configured) and the peers that did not answer. It holds:
//!
//! - a notice naming each replica that did not answer (`data-missing="host:port"`), first,
//!   since every figure below lacks its visits;
//! - visits per day as an inline SVG bar chart: the [`CHART_DAYS`] most recent days that have
//!   visits, newest at the top, one horizontal bar per day stacked from one colour per
//!   replica, with a legend and both axes labelled. Each segment is a `<rect>` with
//!   `data-day`, `data-replica` and `data-count` (the figures of `/stats` for that day and
//!   replica) and a `<title>` ("visit-server-1, 2026-11-26: 42 visits") that a hover or a
//!   screen reader shows;
//! - the total per replica, and the [`TOP_ADDRESSES`] busiest client addresses over the
//!   replicas shown.
//!
//! Horizontal bars keep every label at its size at phone width (a column per day would need
//! 30 labels side by side), and the SVG is scaled to the page's width.
//!
//! The page needs nothing else: no script, no font, no stylesheet or image from anywhere
//! (its icon is an empty `data:` URL, so a browser does not ask for `/favicon.ico`), so it
//! works offline through `kubectl port-forward`, under a `Content-Security-Policy` of
//! [`CSP`]. Every text that comes from outside this module (replica names, which peers
//! report about themselves; addresses; error details) is HTML-escaped, in text and in
//! attributes alike, so a hostile peer's name is shown, never parsed.
//!
//! The chart is written by hand rather than with a plotting crate: the page needs a few
//! dozen `<rect>`s and `<text>`s, each carrying `data-*` attributes and a `<title>`, which
//! plotters' SVG back end (`SVGBackend`, whose elements have a fixed set of attributes) does
//! not emit, so its output would have to be parsed and rewritten. Its size was no reason
//! either way: a scratch crate drawing 30 bars with plotters 0.3 (`svg_backend` only) was
//! 66 KB larger stripped (413 KB against 347 KB) than the same by hand. By hand it is about
//! 200 lines and no dependency.

use std::fmt::{self, Write as _};

use chrono::{DateTime, FixedOffset, NaiveDate};

use crate::peers::Missing;
use crate::stats::{ReplicaStats, Summary};

/// How many days the chart shows: the most recent ones that have visits.
pub const CHART_DAYS: usize = 30;

/// How many client addresses the page lists.
pub const TOP_ADDRESSES: usize = 10;

/// The `Content-Security-Policy` the page is served with: nothing may be loaded or run
/// except the page's own inline styles and `data:` images (its empty icon).
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// One colour per replica, in name order (Okabe and Ito's palette, which people with any
/// common colour-vision deficiency can tell apart). A ninth replica reuses the first.
const PALETTE: [&str; 8] = [
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000",
];

/// What the page shows.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// The replica that renders the page.
    pub this: &'a str,
    /// True when the page covers every replica (peers are configured).
    pub cluster: bool,
    /// The replicas' counts (in any order; the page sorts them by name).
    pub replicas: &'a [ReplicaStats],
    /// The peers that did not answer.
    pub missing: &'a [Missing],
    /// When the counts were taken.
    pub generated: DateTime<FixedOffset>,
}

/// Text made safe for HTML, in element content and in quoted attribute values.
struct Esc<'a>(&'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// "1 visit", "42 visits".
struct Visits(u64);

impl fmt::Display for Visits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.0 == 1 { "" } else { "s" };
        write!(f, "{} visit{s}", self.0)
    }
}

const STYLE: &str = "\
:root{color-scheme:light}\
body{margin:0;font:16px/1.45 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;color:#1b1b1b;background:#fff}\
main{max-width:760px;margin:0 auto;padding:12px 16px 32px}\
h1{font-size:1.6em;margin:.3em 0 0}h2{font-size:1.15em;margin:1.4em 0 .4em}\
.sub{color:#555;margin:.2em 0 1em}\
.missing{border:2px solid #b00020;background:#fdecee;border-radius:6px;padding:8px 14px;margin:1em 0}\
.missing h2{margin:.2em 0;color:#b00020}.missing ul{margin:.3em 0;padding-left:1.2em}\
table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #ddd;vertical-align:top}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\
td{overflow-wrap:break-word}.a{overflow-wrap:anywhere;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em}span.a{color:#555}\
.legend{list-style:none;padding:0;margin:.2em 0 .6em;display:flex;flex-wrap:wrap;gap:4px 18px}\
.sw{display:inline-block;width:.9em;height:.9em;border-radius:2px;margin-right:.35em;vertical-align:-.1em}\
svg{display:block;width:100%;max-width:560px;height:auto}\
svg text{font-family:system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;font-size:11px;fill:#333}\
svg .grid{stroke:#e3e3e3}svg .axis{stroke:#888}\
footer{margin-top:2em;color:#555;font-size:.9em}\
a{color:#0b5cad}\
";

/// Renders the page.
pub fn render(view: &View<'_>) -> String {
    let mut replicas: Vec<&ReplicaStats> = view.replicas.iter().collect();
    replicas.sort_by(|a, b| a.name.cmp(&b.name));
    let total = Summary::total(replicas.iter().map(|r| &r.summary));

    let mut out = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail, here and below.
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Visits · {this}</title>\n<link rel=\"icon\" href=\"data:,\">\n\
         <style>{STYLE}{colours}</style>\n</head>\n<body>\n<main>\n<h1>Visits</h1>\n",
        this = Esc(view.this),
        colours = colour_classes(replicas.len()),
    );
    let shown = if view.cluster {
        let all = replicas.len() + view.missing.len();
        let r = if all == 1 { "replica" } else { "replicas" };
        format!("{} of {all} {r}", replicas.len())
    } else {
        "this replica".to_string()
    };
    let _ = writeln!(
        out,
        "<p class=\"sub\">{} on {shown}, as served by <strong>{}</strong> at {}.</p>",
        Visits(total.visits),
        Esc(view.this),
        view.generated.format("%Y-%m-%d %H:%M:%S UTC%:z"),
    );
    missing_notice(&mut out, view.missing);
    damaged_notice(&mut out, &replicas);
    chart(&mut out, &replicas, &total);
    replica_table(&mut out, &replicas);
    top_addresses(&mut out, &total);
    // The latest visits (a cluster view has 1000 per replica by default), not a whole
    // journal, which may be a gigabyte; this replica's CSV link is its whole export.
    let (scope, amp, latest) = if view.cluster {
        ("?scope=cluster", "&amp;", "?scope=cluster")
    } else {
        ("", "?", "?limit=1000")
    };
    let _ = write!(
        out,
        "<footer>The same figures as <a href=\"/stats{scope}\">/stats{scope}</a> \
         (<a href=\"/stats{scope}{amp}format=csv\">CSV</a>); the latest visits: \
         <a href=\"/visits{latest}\">/visits{latest}</a> \
         (<a href=\"/visits{scope}{amp}format=csv\">CSV</a>); the API: \
         <a href=\"/openapi.json\">/openapi.json</a>. Viewing this page records no visit.\
         </footer>\n</main>\n</body>\n</html>\n"
    );
    out
}

/// The CSS classes `.r0`, `.r1`, ... that colour a replica's bars and legend swatch.
fn colour_classes(n: usize) -> String {
    let mut css = String::new();
    for (i, c) in PALETTE.iter().enumerate().take(n) {
        let _ = write!(css, ".r{i}{{fill:{c};background:{c}}}");
    }
    css
}

/// The colour class of the replica at `index` in name order.
fn class(index: usize) -> usize {
    index % PALETTE.len()
}

fn missing_notice(out: &mut String, missing: &[Missing]) {
    if missing.is_empty() {
        return;
    }
    let (heading, them) = if missing.len() == 1 {
        ("A replica did not answer", "Its visits are")
    } else {
        ("Replicas did not answer", "Their visits are")
    };
    let _ = writeln!(
        out,
        "<section class=\"missing\" role=\"alert\">\n<h2>{heading}</h2>\n<ul>"
    );
    for m in missing {
        let _ = writeln!(
            out,
            "<li data-missing=\"{a}\"><strong>{a}</strong> did not answer: {kind} ({detail})</li>",
            a = Esc(&m.address),
            kind = Esc(m.error.kind().as_str()),
            detail = Esc(&m.error.detail()),
        );
    }
    let _ = writeln!(
        out,
        "</ul>\n<p>{them} not in the figures below.</p>\n</section>"
    );
}

/// Names each file a replica could not count (CONTRACT §10), each in an element carrying
/// `data-damaged="FILE"` and `data-replica="NAME"`: the figures below leave out what they
/// hold.
fn damaged_notice(out: &mut String, replicas: &[&ReplicaStats]) {
    if replicas.iter().all(|r| r.damaged.is_empty()) {
        return;
    }
    let _ = writeln!(
        out,
        "<section class=\"missing\" role=\"alert\">\n<h2>Damaged files</h2>\n<ul>"
    );
    for r in replicas {
        for d in &r.damaged {
            let _ = writeln!(
                out,
                "<li data-damaged=\"{file}\" data-replica=\"{name}\"><strong>{file}</strong> \
                 on {name}: {error}</li>",
                file = Esc(&d.file),
                name = Esc(&r.name),
                error = Esc(&d.error),
            );
        }
    }
    let _ = writeln!(
        out,
        "</ul>\n<p>What they hold is not in the figures below; recording goes on. \
         See the README, \"Damaged files\".</p>\n</section>"
    );
}

/// The chart's geometry, in SVG user units (scaled to the page's width).
const WIDTH: f64 = 340.0;
/// Room for the day labels and the vertical axis title.
const LEFT: f64 = 90.0;
/// Room for each day's total after its bar.
const RIGHT: f64 = 36.0;
const TOP: f64 = 6.0;
const ROW: f64 = 18.0;
const BAR: f64 = 12.0;
/// Room for the tick labels and the horizontal axis title.
const AXIS: f64 = 40.0;
const PLOT: f64 = WIDTH - LEFT - RIGHT;

/// A per-replica count on one day.
fn count_on(summary: &Summary, day: NaiveDate) -> u64 {
    summary
        .days
        .iter()
        .find(|(d, _)| *d == day)
        .map_or(0, |(_, n)| *n)
}

/// The smallest of 1, 2, 5, 10, 20, 50, ... that is at least `x`.
fn nice_step(x: u64) -> u64 {
    let mut magnitude = 1u64;
    loop {
        for m in [1, 2, 5] {
            let step = magnitude.saturating_mul(m);
            if step >= x {
                return step.max(1);
            }
        }
        if magnitude > u64::MAX / 10 {
            return u64::MAX;
        }
        magnitude *= 10;
    }
}

fn chart(out: &mut String, replicas: &[&ReplicaStats], total: &Summary) {
    let _ = writeln!(out, "<section>\n<h2>Visits per day</h2>");
    // `total.days` is newest first: the most recent days with visits.
    let days: Vec<(NaiveDate, u64)> = total.days.iter().take(CHART_DAYS).copied().collect();
    if days.is_empty() {
        let _ = writeln!(out, "<p>No visits recorded yet.</p>\n</section>");
        return;
    }
    let shown: u64 = days.iter().map(|(_, n)| n).sum();
    let (first, last) = (days[days.len() - 1].0, days[0].0);
    let _ = write!(
        out,
        "<p>The {n} most recent days with visits ({first} to {last}), newest at the top; \
         one colour per replica.",
        n = days.len()
    );
    if total.visits > shown {
        let _ = write!(out, " Earlier days: {}.", Visits(total.visits - shown));
    }
    let _ = writeln!(out, "</p>\n<ul class=\"legend\">");
    for (i, r) in replicas.iter().enumerate() {
        let _ = writeln!(
            out,
            "<li><span class=\"sw r{}\"></span>{}</li>",
            class(i),
            Esc(&r.name)
        );
    }
    let _ = writeln!(out, "</ul>");

    let max = days.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
    let step = nice_step(max.div_ceil(4));
    let axis_max = max.div_ceil(step).saturating_mul(step);
    let scale = PLOT / axis_max as f64;
    let plot_bottom = TOP + ROW * days.len() as f64;
    let height = plot_bottom + AXIS;
    let _ = writeln!(
        out,
        "<svg viewBox=\"0 0 {WIDTH} {height}\" width=\"{WIDTH}\" height=\"{height}\" \
         role=\"img\" aria-labelledby=\"chart-title\">\n\
         <title id=\"chart-title\">Visits per day, the {n} most recent days with visits</title>",
        n = days.len()
    );
    // Vertical grid lines and the horizontal axis' ticks.
    let mut tick = 0u64;
    while tick <= axis_max {
        let x = LEFT + tick as f64 * scale;
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{x:.2}\" y1=\"{TOP}\" x2=\"{x:.2}\" y2=\"{plot_bottom}\"/>\
             <text x=\"{x:.2}\" y=\"{y}\" text-anchor=\"middle\">{tick}</text>",
            y = plot_bottom + 14.0
        );
        tick = match tick.checked_add(step) {
            Some(t) => t,
            None => break,
        };
    }
    let _ = writeln!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{plot_bottom}\"/>\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{plot_bottom}\" x2=\"{r}\" y2=\"{plot_bottom}\"/>\n\
         <text x=\"{cx}\" y=\"{ty}\" text-anchor=\"middle\">visits</text>\n\
         <text transform=\"translate(10 {cy}) rotate(-90)\" text-anchor=\"middle\">day</text>",
        r = LEFT + PLOT,
        cx = LEFT + PLOT / 2.0,
        ty = height - 6.0,
        cy = TOP + (plot_bottom - TOP) / 2.0,
    );
    for (row, (day, day_total)) in days.iter().enumerate() {
        let y = TOP + ROW * row as f64;
        let _ = writeln!(
            out,
            "<text x=\"{lx}\" y=\"{ly}\" text-anchor=\"end\">{day}</text>",
            lx = LEFT - 6.0,
            ly = y + ROW / 2.0 + 4.0,
        );
        let mut x = LEFT;
        for (i, r) in replicas.iter().enumerate() {
            let count = count_on(&r.summary, *day);
            if count == 0 {
                continue;
            }
            let w = count as f64 * scale;
            let _ = writeln!(
                out,
                "<rect class=\"r{c}\" x=\"{x:.2}\" y=\"{by}\" width=\"{w:.2}\" height=\"{BAR}\" \
                 data-day=\"{day}\" data-replica=\"{name}\" data-count=\"{count}\">\
                 <title>{name}, {day}: {visits}</title></rect>",
                c = class(i),
                by = y + (ROW - BAR) / 2.0,
                name = Esc(&r.name),
                visits = Visits(count),
            );
            x += w;
        }
        let _ = writeln!(
            out,
            "<text x=\"{tx:.2}\" y=\"{ly}\">{day_total}</text>",
            tx = x + 4.0,
            ly = y + ROW / 2.0 + 4.0,
        );
    }
    let _ = writeln!(out, "</svg>\n</section>");
}

fn replica_table(out: &mut String, replicas: &[&ReplicaStats]) {
    let _ = writeln!(
        out,
        "<section>\n<h2>Replicas</h2>\n<table>\n<thead><tr><th>replica and address</th>\
         <th class=\"n\">visits</th><th class=\"n\">days</th></tr></thead>\n<tbody>"
    );
    for (i, r) in replicas.iter().enumerate() {
        let s = &r.summary;
        let days = s.days.len();
        let _ = writeln!(
            out,
            "<tr data-total-replica=\"{name}\" data-total=\"{v}\"><td><span class=\"sw r{c}\"></span>{name}\
             <br><span class=\"a\">{addr}</span></td><td class=\"n\">{v}</td><td class=\"n\">{days}</td></tr>",
            name = Esc(&r.name),
            c = class(i),
            addr = Esc(&r.address),
            v = s.visits,
        );
    }
    let _ = writeln!(out, "</tbody>\n</table>");
    let corrupt: u64 = replicas.iter().map(|r| r.summary.corrupt_lines).sum();
    if corrupt > 0 {
        let _ = writeln!(
            out,
            "<p>{corrupt} line{s} of the journals {are} not visits (corrupt) and {are} not counted.</p>",
            s = if corrupt == 1 { "" } else { "s" },
            are = if corrupt == 1 { "is" } else { "are" },
        );
    }
    let _ = writeln!(out, "</section>");
}

fn top_addresses(out: &mut String, total: &Summary) {
    let _ = writeln!(out, "<section>\n<h2>Top {TOP_ADDRESSES} addresses</h2>");
    if total.ips.is_empty() {
        let _ = writeln!(out, "<p>None yet.</p>\n</section>");
        return;
    }
    let _ = writeln!(
        out,
        "<table>\n<thead><tr><th class=\"n\">#</th><th>address</th><th class=\"n\">visits</th></tr></thead>\n<tbody>"
    );
    for (rank, (ip, n)) in total.ips.iter().take(TOP_ADDRESSES).enumerate() {
        let ip = ip.to_string();
        let _ = writeln!(
            out,
            "<tr data-ip=\"{ip}\" data-count=\"{n}\"><td class=\"n\">{r}</td><td class=\"a\">{ip}</td>\
             <td class=\"n\">{n}</td></tr>",
            ip = Esc(&ip),
            r = rank + 1,
        );
    }
    let _ = writeln!(out, "</tbody>\n</table>");
    if !total.ips_exact {
        let _ = writeln!(
            out,
            "<p>These counts are estimates: the journals hold more distinct addresses than are \
             counted one by one (see <code>ips_exact</code> in /stats).</p>"
        );
    }
    let _ = writeln!(out, "</section>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::PeerError;
    use crate::stats::DamagedFile;
    use visit_journal::Visit;

    fn day(d: &str) -> NaiveDate {
        d.parse().unwrap()
    }

    /// A replica with `counts[i]` visits on each day `(date, count)`, from `ips` in turn.
    fn replica(name: &str, counts: &[(&str, u64)], ips: &[&str]) -> ReplicaStats {
        let mut visits: Vec<Visit> = Vec::new();
        let mut k = 0;
        for (d, n) in counts {
            for _ in 0..*n {
                let ip = ips[k % ips.len()];
                k += 1;
                visits.push(format!("{d}T12:00:00.000Z - {ip}").parse().unwrap());
            }
        }
        ReplicaStats {
            name: name.into(),
            address: format!("127.0.0.1:{}", 8080 + name.len()),
            summary: Summary::of_visits(&visits),
            damaged: Vec::new(),
        }
    }

    fn page(replicas: &[ReplicaStats], missing: &[Missing]) -> String {
        render(&View {
            this: "r0",
            cluster: true,
            replicas,
            missing,
            generated: "2026-11-26T10:00:00+00:00".parse().unwrap(),
        })
    }

    /// Every `<rect ...>` bar as (day, replica, count, width).
    fn bars(html: &str) -> Vec<(String, String, u64, f64)> {
        let attr = |tag: &str, name: &str| -> String {
            let start = tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            let len = tag[start..].find('"').unwrap();
            tag[start..start + len].to_string()
        };
        html.split("<rect ")
            .skip(1)
            .map(|rest| {
                let tag = &rest[..rest.find('>').unwrap()];
                (
                    attr(tag, "data-day"),
                    attr(tag, "data-replica"),
                    attr(tag, "data-count").parse().unwrap(),
                    attr(tag, "width").parse().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn escapes_everything_that_comes_from_outside() {
        let hostile = "<script>alert(1)</script>\"'&x";
        let r = replica(hostile, &[("2026-11-26", 2)], &["10.0.0.1"]);
        let m = Missing {
            address: "\"><img src=x onerror=alert(1)>:80".into(),
            error: PeerError::BadResponse("<b>bold</b>".into()),
        };
        let html = page(&[r], &[m]);
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;x"));
        assert!(html.contains("data-missing=\"&quot;&gt;&lt;img src=x onerror=alert(1)&gt;:80\""));
        let b = bars(&html);
        assert_eq!(b.len(), 1);
        assert_eq!(
            b[0].1,
            "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;x"
        );
        assert_eq!(
            Esc("a&b<c>d\"e'f").to_string(),
            "a&amp;b&lt;c&gt;d&quot;e&#39;f"
        );
    }

    #[test]
    fn bars_are_stacked_and_as_long_as_their_counts() {
        let a = replica(
            "a",
            &[("2026-11-25", 10), ("2026-11-26", 30)],
            &["10.0.0.1"],
        );
        let b = replica("b", &[("2026-11-26", 10)], &["10.0.0.2"]);
        let html = page(&[b, a], &[]);
        let bars = bars(&html);
        let got: Vec<(&str, &str, u64)> = bars
            .iter()
            .map(|(d, r, n, _)| (d.as_str(), r.as_str(), *n))
            .collect();
        // Newest day first, replicas in name order within a day.
        assert_eq!(
            got,
            [
                ("2026-11-26", "a", 30),
                ("2026-11-26", "b", 10),
                ("2026-11-25", "a", 10)
            ]
        );
        // The busiest day is 40 visits; the axis ends at 40 (steps of 10).
        for (_, _, n, w) in &bars {
            assert!((w - *n as f64 * PLOT / 40.0).abs() < 0.01, "{n} -> {w}");
        }
        assert!(html.contains("<title>a, 2026-11-26: 30 visits</title>"));
        assert!(html.contains(">40</text>"));
        // A replica's segment starts where the previous one ends.
        assert!(html.contains(&format!("x=\"{:.2}\"", LEFT + 30.0 * PLOT / 40.0)));
        // Two colours, a legend entry each.
        assert!(html.contains("<li><span class=\"sw r0\"></span>a</li>"));
        assert!(html.contains("<li><span class=\"sw r1\"></span>b</li>"));
        assert!(html.contains("data-total-replica=\"a\" data-total=\"40\""));
    }

    #[test]
    fn an_empty_history_has_no_bars() {
        let html = page(&[replica("r0", &[], &["10.0.0.1"])], &[]);
        assert!(bars(&html).is_empty());
        assert!(!html.contains("<svg"));
        assert!(html.contains("No visits recorded yet."));
        assert!(html.contains("<p>None yet.</p>"));
        assert!(html.contains("0 visits on 1 of 1 replica,"));
    }

    #[test]
    fn one_day_one_visit() {
        let html = page(&[replica("r0", &[("2026-11-26", 1)], &["10.0.0.1"])], &[]);
        let b = bars(&html);
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].0.as_str(), b[0].2), ("2026-11-26", 1));
        assert!((b[0].3 - PLOT).abs() < 0.01);
        assert!(html.contains("<title>r0, 2026-11-26: 1 visit</title>"));
        assert!(html.contains("(2026-11-26 to 2026-11-26)"));
    }

    #[test]
    fn only_the_30_most_recent_days_with_visits_are_charted() {
        // 45 days with visits, every other calendar day, and 3 visits each.
        let days: Vec<String> = (0..45)
            .map(|i| (day("2026-01-01") + chrono::Days::new(2 * i)).to_string())
            .collect();
        let counts: Vec<(&str, u64)> = days.iter().map(|d| (d.as_str(), 3)).collect();
        let html = page(&[replica("r0", &counts, &["10.0.0.1"])], &[]);
        let b = bars(&html);
        assert_eq!(b.len(), CHART_DAYS);
        let charted: Vec<&str> = b.iter().map(|(d, _, _, _)| d.as_str()).collect();
        let expected: Vec<&str> = days
            .iter()
            .rev()
            .take(CHART_DAYS)
            .map(String::as_str)
            .collect();
        assert_eq!(charted, expected);
        assert!(html.contains("Earlier days: 45 visits."), "{html}");
    }

    #[test]
    fn missing_replicas_are_named_first() {
        let r = replica("r0", &[("2026-11-26", 2)], &["10.0.0.1"]);
        let missing = [
            Missing {
                address: "127.0.0.1:8083".into(),
                error: PeerError::Refused,
            },
            Missing {
                address: "vs-2.vs:8080".into(),
                error: PeerError::Timeout,
            },
        ];
        let html = page(&[r], &missing);
        let notice = html.find("data-missing=\"127.0.0.1:8083\"").unwrap();
        assert!(notice < html.find("<svg").unwrap());
        assert!(html.contains("<li data-missing=\"vs-2.vs:8080\"><strong>vs-2.vs:8080</strong> did not answer: timeout"));
        assert!(html.contains("Replicas did not answer"));
        assert!(html.contains("1 of 3 replicas"));
        let none = page(&[replica("r0", &[], &["10.0.0.1"])], &[]);
        assert!(!none.contains("data-missing"));
    }

    #[test]
    fn lists_the_top_10_addresses_over_the_replicas() {
        let ips: Vec<String> = (1..=15).map(|i| format!("10.0.0.{i}")).collect();
        // Address i gets i visits on replica a, and 10.0.0.1 gets 100 more on b.
        let mut visits: Vec<Visit> = Vec::new();
        for (i, ip) in ips.iter().enumerate() {
            for _ in 0..=i {
                visits.push(format!("2026-11-26T12:00:00Z - {ip}").parse().unwrap());
            }
        }
        let a = ReplicaStats {
            name: "a".into(),
            address: "127.0.0.1:1".into(),
            summary: Summary::of_visits(&visits),
            damaged: Vec::new(),
        };
        let b = replica("b", &[("2026-11-26", 100)], &["10.0.0.1"]);
        let html = page(&[a, b], &[]);
        let rows: Vec<&str> = html
            .split("<tr data-ip=\"")
            .skip(1)
            .map(|r| &r[..r.find('"').unwrap()])
            .collect();
        assert_eq!(rows.len(), TOP_ADDRESSES);
        assert_eq!(rows[0], "10.0.0.1");
        assert_eq!(
            rows[1..],
            [
                "10.0.0.15",
                "10.0.0.14",
                "10.0.0.13",
                "10.0.0.12",
                "10.0.0.11",
                "10.0.0.10",
                "10.0.0.9",
                "10.0.0.8",
                "10.0.0.7"
            ]
        );
        assert!(html.contains("<tr data-ip=\"10.0.0.1\" data-count=\"101\">"));
    }

    #[test]
    fn damaged_files_are_named_each_with_its_replica() {
        let mut r = replica("r0", &[("2026-11-26", 2)], &["10.0.0.1"]);
        r.damaged = vec![DamagedFile {
            file: "visits.txt.<summary>".into(),
            error: "line 2 at byte 19: not a 'YYYY-MM-DD COUNT' line".into(),
        }];
        let html = page(&[r, replica("r1", &[], &["10.0.0.1"])], &[]);
        let at = html
            .find("<li data-damaged=\"visits.txt.&lt;summary&gt;\" data-replica=\"r0\">")
            .unwrap();
        assert!(at < html.find("<svg").unwrap());
        assert!(html.contains("not a &#39;YYYY-MM-DD COUNT&#39; line"));
        let none = page(&[replica("r0", &[], &["10.0.0.1"])], &[]);
        assert!(!none.contains("data-damaged"));
    }

    #[test]
    fn nice_steps() {
        let steps: Vec<u64> = [0, 1, 2, 3, 6, 11, 49, 51, 999, u64::MAX]
            .iter()
            .map(|&x| nice_step(x))
            .collect();
        assert_eq!(steps, [1, 1, 2, 5, 10, 20, 50, 100, 1000, u64::MAX]);
    }

    #[test]
    fn page_is_self_contained() {
        let html = page(&[replica("r0", &[("2026-11-26", 2)], &["10.0.0.1"])], &[]);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<meta name=\"viewport\""));
        assert!(html.contains("<link rel=\"icon\" href=\"data:,\">"));
        // No script, and nothing fetched: the only URLs are same-origin links.
        assert!(!html.contains("<script"));
        assert!(!html.contains("src="));
        assert!(!html.contains("http:") && !html.contains("https:") && !html.contains("//"));
    }
}
