//! The journal's history on disk, as names and text: sealed segments, the summary of retired
//! ones, and which segments retention retires. Pure: no I/O (`lifecycle.rs` does it).
//!
//! A journal at `visits.txt` with rotation on is, in one directory:
//!
//! ```text
//! visits.txt.summary   counts of the retired segments: "# folded through 3, 5120 visits", then "2026-11-26 5120" lines
//! visits.txt.000004    the oldest sealed segment still on disk
//! visits.txt.000005
//! visits.txt           the live file, the only one ever written
//! ```
//!
//! Segment numbers only grow: a new segment is numbered one above both the highest segment on
//! disk and the summary's "folded through", so a number is never reused, even after every
//! segment was retired.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, NaiveDate};

use crate::counts::Tally;

/// The fewest digits of a segment number in its file name (`visits.txt.000001`).
const DIGITS: usize = 6;

/// The path of sealed segment `n` of the journal at `live`: `<live>.<n>`, zero-padded to at
/// least six digits.
pub(crate) fn segment_path(live: &Path, n: u64) -> PathBuf {
    with_suffix(live, &format!(".{n:0DIGITS$}"))
}

/// `<live>.summary`: the counts of the retired segments.
pub(crate) fn summary_path(live: &Path) -> PathBuf {
    with_suffix(live, ".summary")
}

/// `<live>.summary.tmp`: the next summary, before it is renamed over the old one.
pub(crate) fn summary_temp_path(live: &Path) -> PathBuf {
    with_suffix(live, ".summary.tmp")
}

fn with_suffix(live: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(live.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// Where retention sets aside the file with a segment's name at `seg` that is not a regular
/// file that can be read: `<seg>.damaged`, or `<seg>.damaged.<k>` for k > 1 if that is taken.
pub(crate) fn set_aside_path(seg: &Path, k: u32) -> PathBuf {
    if k <= 1 {
        with_suffix(seg, ".damaged")
    } else {
        with_suffix(seg, &format!(".damaged.{k}"))
    }
}

/// True if the file name `name` is one that [`set_aside_path`] makes for the journal whose
/// live file is named `live_name`.
pub(crate) fn is_set_aside(live_name: &OsStr, name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    let Some(at) = find(bytes, b".damaged") else {
        return false;
    };
    let (segment, rest) = bytes.split_at(at);
    let rest = &rest[b".damaged".len()..];
    // The part before is a segment's name; after it, nothing or `.<k>`.
    let segment = <OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(segment);
    segment_number(live_name, segment).is_some()
        && (rest.is_empty()
            || rest
                .strip_prefix(b".")
                .is_some_and(|k| !k.is_empty() && k.iter().all(u8::is_ascii_digit)))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The segment number that the file name `name` (in the live file's directory) stands for, if
/// it is one: `<live_name>.` and the number written exactly as [`segment_path`] writes it
/// (at least six digits, no extra leading zero, not 0). Anything else (`visits.txt.1`,
/// `visits.txt.0000001`, `visits.txt.summary`) is not a segment and is left alone.
pub(crate) fn segment_number(live_name: &OsStr, name: &OsStr) -> Option<u64> {
    let digits = name
        .as_encoded_bytes()
        .strip_prefix(live_name.as_encoded_bytes())?
        .strip_prefix(b".")?;
    if digits.len() < DIGITS || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits.len() > DIGITS && digits[0] == b'0' {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    (n > 0).then_some(n)
}

/// What `<live>.summary` says: the retired segments' visits per day.
///
/// ```text
/// # folded through 12, 5120 visits     every segment numbered 12 or below is counted here
/// # corrupt 3                          optional: corrupt lines met in retired segments
/// # damaged 1                          optional: files with a segment's name set aside
/// 2026-11-26 5000                      visits per day, ascending; they add up to the total
/// 2026-11-27 120
/// ```
///
/// A first line without the total (`# folded through 12`, written before the total existed)
/// is accepted, and gains it at the next retirement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Every segment numbered at or below this has been counted here (and is deleted, or is
    /// about to be: a crash between the two steps leaves it on disk, and readers skip it).
    pub(crate) folded_through: u64,
    /// Corrupt lines met in retired segments.
    pub(crate) corrupt: u64,
    /// Files with a segment's name that retention set aside (`<name>.damaged`).
    pub(crate) damaged: u64,
    /// Visits per day, the day as written in each record's own offset.
    pub(crate) days: BTreeMap<NaiveDate, u64>,
}

/// Why a summary does not parse: its 1-based line, the byte at which that line starts, and
/// what is wrong; and what its first line says, if that much can be trusted (numbering needs
/// only that).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadSummary {
    pub(crate) line: u64,
    pub(crate) offset: u64,
    pub(crate) reason: &'static str,
    /// "folded through", if the first line parses and ends in its newline.
    pub(crate) folded_through: Option<u64>,
}

/// The first line: "folded through" and, in a current summary, the total.
fn parse_head(first: &[u8]) -> Option<(u64, Option<u64>)> {
    let rest = first.strip_prefix(b"# folded through ")?;
    match rest.iter().position(|&b| b == b',') {
        None => Some((parse_count(rest)?, None)),
        Some(comma) => {
            let total = rest[comma..]
                .strip_prefix(b", ")?
                .strip_suffix(b" visits")?;
            Some((parse_count(&rest[..comma])?, Some(parse_count(total)?)))
        }
    }
}

/// "folded through" from a summary's first line, if it parses and ends in its newline:
/// all that numbering the next segment needs, even when the rest of the summary is damaged.
pub(crate) fn folded_through(text: &[u8]) -> Option<u64> {
    let end = text.iter().position(|&b| b == b'\n')?;
    parse_head(&text[..end]).map(|(n, _)| n)
}

impl Summary {
    /// Parses the text of a summary file. Strict: anything but the format [`Summary::to_text`]
    /// writes (or the first line of an older one, without the total) is an error, and so are
    /// days that do not add up to the total, or a last line without its newline (a summary
    /// cut short): a damaged summary is never silently reset or read in part.
    pub(crate) fn parse(text: &[u8]) -> Result<Summary, BadSummary> {
        let head = folded_through(text);
        let bad = |line: usize, offset: u64, reason| BadSummary {
            line: line as u64,
            offset,
            reason,
            folded_through: head,
        };
        if text.is_empty() {
            return Err(bad(1, 0, "empty summary"));
        }
        let Some(body) = text.strip_suffix(b"\n") else {
            let start = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let line = text.iter().filter(|&&b| b == b'\n').count() + 1;
            return Err(bad(
                line,
                start as u64,
                "the last line has no newline (cut short?)",
            ));
        };
        let mut lines = body.split(|&b| b == b'\n');
        let first = lines.next().unwrap_or_default();
        let (folded_through, total) = parse_head(first).ok_or(bad(
            1,
            0,
            "first line is not '# folded through <N>, <T> visits'",
        ))?;
        let mut summary = Summary {
            folded_through,
            ..Summary::default()
        };
        let mut offset = first.len() as u64 + 1;
        let mut seen_corrupt = false;
        let mut seen_damaged = false;
        let mut last_day: Option<NaiveDate> = None;
        for (i, line) in lines.enumerate() {
            let number = i + 2;
            if let Some(rest) = line.strip_prefix(b"# corrupt ") {
                if seen_corrupt || seen_damaged || last_day.is_some() {
                    return Err(bad(number, offset, "'# corrupt' line out of place"));
                }
                summary.corrupt =
                    parse_count(rest).ok_or(bad(number, offset, "bad '# corrupt <M>' line"))?;
                seen_corrupt = true;
            } else if let Some(rest) = line.strip_prefix(b"# damaged ") {
                if seen_damaged || last_day.is_some() {
                    return Err(bad(number, offset, "'# damaged' line out of place"));
                }
                summary.damaged =
                    parse_count(rest).ok_or(bad(number, offset, "bad '# damaged <K>' line"))?;
                seen_damaged = true;
            } else {
                let (day, count) = parse_day_line(line).ok_or(bad(
                    number,
                    offset,
                    "not a 'YYYY-MM-DD COUNT' line",
                ))?;
                if last_day.is_some_and(|last| last >= day) {
                    return Err(bad(number, offset, "days are not in ascending order"));
                }
                last_day = Some(day);
                summary.days.insert(day, count);
            }
            offset += line.len() as u64 + 1;
        }
        if total.is_some_and(|total| summary.visits_checked() != Some(total)) {
            return Err(bad(
                1,
                0,
                "the days do not add up to the total of the first line (lines lost?)",
            ));
        }
        Ok(summary)
    }

    /// The file's text: `# folded through N, T visits`, `# corrupt M` if M > 0, `# damaged K`
    /// if K > 0, then one line per day.
    pub(crate) fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut text = format!(
            "# folded through {}, {} visits\n",
            self.folded_through,
            self.visits()
        );
        if self.corrupt > 0 {
            let _ = writeln!(text, "# corrupt {}", self.corrupt);
        }
        if self.damaged > 0 {
            let _ = writeln!(text, "# damaged {}", self.damaged);
        }
        for (day, count) in &self.days {
            let _ = writeln!(text, "{} {count}", day.format("%Y-%m-%d"));
        }
        text
    }

    /// Adds segment `n`'s counts.
    pub(crate) fn fold(&mut self, n: u64, tally: &Tally) {
        self.folded_through = self.folded_through.max(n);
        self.corrupt = self.corrupt.saturating_add(tally.corrupt);
        for (day, count) in &tally.days {
            let total = self.days.entry(*day).or_default();
            *total = total.saturating_add(*count);
        }
    }

    /// Counts segment `n`, which is not a file that can be read, as set aside.
    pub(crate) fn set_aside(&mut self, n: u64) {
        self.folded_through = self.folded_through.max(n);
        self.damaged = self.damaged.saturating_add(1);
    }

    /// The visits counted here.
    pub(crate) fn visits(&self) -> u64 {
        self.days.values().fold(0, |a, b| a.saturating_add(*b))
    }

    /// The visits counted here, `None` if they overflow a u64 (then no total can match).
    fn visits_checked(&self) -> Option<u64> {
        self.days.values().try_fold(0u64, |a, b| a.checked_add(*b))
    }

    /// The summary's counts as a tally (visits per day, corrupt lines; no addresses).
    pub(crate) fn tally(&self) -> Tally {
        let mut tally = Tally::with_addresses(0);
        tally.visits = self.visits();
        tally.days.clone_from(&self.days);
        tally.corrupt = self.corrupt;
        tally
    }
}

/// A decimal count as the summary writes it: digits only, no sign, no leading zero.
fn parse_count(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits.len() > 1 && digits[0] == b'0' {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn parse_day_line(line: &[u8]) -> Option<(NaiveDate, u64)> {
    let (day, count) = (line.get(..10)?, line.get(10..)?.strip_prefix(b" ")?);
    let day = std::str::from_utf8(day).ok()?;
    if !day.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        _ => b.is_ascii_digit(),
    }) {
        return None;
    }
    let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    Some((day, parse_count(count)?))
}

/// The retention knobs (0 = off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Retention {
    /// Total bytes of sealed segments kept.
    pub(crate) size: u64,
    /// Days a segment is kept after its newest visit.
    pub(crate) days: u64,
}

/// How many of the oldest sealed segments retention retires.
///
/// `sizes` are the sealed segments' sizes, oldest first. The oldest are retired while their
/// total exceeds `retention.size`, or while the oldest one's newest visit is more than
/// `retention.days` × 24 hours before `now`. `newest(i)` tells segment `i`'s newest visit; it
/// is asked only when the age decides (reading a segment costs), and `None` (a segment without
/// a single valid record) counts as old: there is nothing in it to keep for its age, and its
/// corrupt lines are counted in the summary.
pub(crate) fn retire_count<E>(
    sizes: &[u64],
    retention: Retention,
    now: DateTime<FixedOffset>,
    mut newest: impl FnMut(usize) -> Result<Option<DateTime<FixedOffset>>, E>,
) -> Result<usize, E> {
    let mut total: u64 = sizes.iter().fold(0, |a, b| a.saturating_add(*b));
    let max_age = i64::try_from(retention.days)
        .ok()
        .and_then(|d| d.checked_mul(86_400))
        .and_then(chrono::TimeDelta::try_seconds);
    let mut retired = 0;
    for (i, &size) in sizes.iter().enumerate() {
        let too_big = retention.size > 0 && total > retention.size;
        let too_old = !too_big
            && retention.days > 0
            && match max_age {
                Some(max_age) => {
                    newest(i)?.is_none_or(|at| now.signed_duration_since(at) > max_age)
                }
                None => false, // Longer ago than time goes back: never old.
            };
        if !(too_big || too_old) {
            break;
        }
        total -= size;
        retired += 1;
    }
    Ok(retired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn segment_names_are_six_digits_at_least_and_parse_back() {
        let live = Path::new("/data/visits.txt");
        assert_eq!(segment_path(live, 1), Path::new("/data/visits.txt.000001"));
        assert_eq!(
            segment_path(live, 12_345_678),
            Path::new("/data/visits.txt.12345678")
        );
        assert_eq!(summary_path(live), Path::new("/data/visits.txt.summary"));
        let name = OsStr::new("visits.txt");
        let n = |s: &str| segment_number(name, OsStr::new(s));
        assert_eq!(n("visits.txt.000001"), Some(1));
        assert_eq!(n("visits.txt.999999"), Some(999_999));
        assert_eq!(n("visits.txt.1000000"), Some(1_000_000));
        for not in [
            "visits.txt",
            "visits.txt.1",
            "visits.txt.00001",
            "visits.txt.0000001",
            "visits.txt.000000",
            "visits.txt.summary",
            "visits.txt.summary.tmp",
            "visits.txt.00000a",
            "visits.txt.000001.tmp",
            "other.txt.000001",
            "visits.txt.99999999999999999999999",
        ] {
            assert_eq!(n(not), None, "{not}");
        }
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn summary_text_is_exact() {
        let mut s = Summary::default();
        assert_eq!(s.to_text(), "# folded through 0, 0 visits\n");
        let mut tally = Tally::default();
        let ip = "10.0.0.1".parse().unwrap();
        for at in [
            "2026-11-26T23:59:59.999+03:00",
            "2026-11-26T00:00:00Z",
            "2026-11-27T01:00:00-05:00",
        ] {
            tally.visit(at.parse().unwrap(), ip);
        }
        tally.corrupt = 2;
        s.fold(7, &tally);
        s.set_aside(8);
        assert_eq!(
            s.to_text(),
            "# folded through 8, 3 visits\n# corrupt 2\n# damaged 1\n2026-11-26 2\n2026-11-27 1\n"
        );
        assert_eq!(Summary::parse(s.to_text().as_bytes()), Ok(s.clone()));
        assert_eq!(s.visits(), 3);
        assert_eq!(s.tally().visits, 3);
        // A summary written before the total existed, without the optional lines.
        let parsed = Summary::parse(b"# folded through 3\n0001-01-01 5\n").unwrap();
        assert_eq!(parsed.folded_through, 3);
        assert_eq!(parsed.days[&day("0001-01-01")], 5);
        // It gains the total when it is written again.
        assert_eq!(
            parsed.to_text(),
            "# folded through 3, 5 visits\n0001-01-01 5\n"
        );
    }

    #[test]
    fn a_corrupt_summary_names_its_line() {
        let err = |text: &str| Summary::parse(text.as_bytes()).unwrap_err();
        assert_eq!(err("").line, 1);
        assert_eq!(err("folded through 3\n").line, 1);
        assert_eq!(err("# folded through -3\n").line, 1);
        assert_eq!(err("# folded through 03\n").line, 1);
        assert_eq!(err("# folded through 3, 4\n").line, 1);
        assert_eq!(err("# folded through 3,4 visits\n").line, 1);
        let e = err("# folded through 3\n2026-11-26 4\n2026-11-2 4\n");
        assert_eq!((e.line, e.offset), (3, 32));
        assert_eq!(
            e.folded_through,
            Some(3),
            "numbering needs only the first line"
        );
        assert_eq!(
            err("# folded through 3\n2026-11-27 4\n2026-11-26 4\n").reason,
            "days are not in ascending order"
        );
        assert_eq!(
            err("# folded through 3\n2026-11-26 4\n2026-11-26 4\n").line,
            3
        );
        assert_eq!(
            err("# folded through 3\n2026-11-26 4\n# corrupt 1\n").line,
            3
        );
        assert_eq!(
            err("# folded through 3\n# damaged 1\n# corrupt 1\n").line,
            3
        );
        assert_eq!(err("# folded through 3\n2026-13-26 4\n").line, 2);
        assert_eq!(err("# folded through 3\n2026-11-26  4\n").line, 2);
        assert_eq!(err("# folded through 3\n2026-11-26 4\n\n").line, 3);
        assert_eq!(err("# folded through 3\n+026-11-26 4\n").line, 2);
    }

    #[test]
    fn a_summary_cut_short_is_damaged_even_at_a_line_boundary() {
        let whole = "# folded through 9, 59 visits\n2026-11-22 5\n2026-11-23 54\n";
        assert!(Summary::parse(whole.as_bytes()).is_ok());
        // Cut at a line boundary: every line parses, but the days no longer add up.
        let e = Summary::parse(b"# folded through 9, 59 visits\n2026-11-22 5\n").unwrap_err();
        assert_eq!((e.line, e.folded_through), (1, Some(9)));
        assert!(e.reason.contains("add up"), "{}", e.reason);
        // Cut inside the last line: "54" read as "5" would add up wrongly too.
        let e = Summary::parse(b"# folded through 9, 59 visits\n2026-11-22 5\n2026-11-23 5")
            .unwrap_err();
        assert_eq!(e.line, 3);
        // Cut inside the first line: nothing can be trusted, not even for numbering.
        let e = Summary::parse(b"# folded through 1").unwrap_err();
        assert_eq!(e.folded_through, None);
        assert_eq!(folded_through(b"# folded through 1"), None);
        assert_eq!(
            folded_through(b"# folded through 12, 3 visits\nxx"),
            Some(12)
        );
        // A total that no sum of days can reach.
        let big = format!(
            "# folded through 1, 1 visits\n2026-11-22 {}\n2026-11-23 {}\n",
            u64::MAX,
            2
        );
        assert!(Summary::parse(big.as_bytes()).is_err());
    }

    fn at(s: &str) -> DateTime<FixedOffset> {
        s.parse().unwrap()
    }

    #[test]
    fn retention_retires_the_oldest_while_too_big_or_too_old() {
        let now = at("2026-11-26T12:00:00Z");
        let never = |_: usize| -> Result<_, ()> { panic!("age not needed") };
        let size = |size| Retention { size, days: 0 };
        assert_eq!(retire_count(&[10, 10, 10], size(0), now, never), Ok(0));
        assert_eq!(retire_count(&[10, 10, 10], size(30), now, never), Ok(0));
        assert_eq!(retire_count(&[10, 10, 10], size(29), now, never), Ok(1));
        assert_eq!(retire_count(&[10, 10, 10], size(5), now, never), Ok(3));
        assert_eq!(retire_count(&[], size(5), now, never), Ok(0));

        let newest = [
            Some(at("2026-11-20T11:59:59Z")),
            None,
            Some(at("2026-11-24T12:00:00+01:00")),
            Some(at("2026-11-25T12:00:00Z")),
        ];
        let ages = |i: usize| -> Result<_, ()> { Ok(newest[i]) };
        let days = |days| Retention { size: 0, days };
        // More than 2 × 24 h old: the first three (the one without records counts as old).
        assert_eq!(retire_count(&[1; 4], days(2), now, ages), Ok(3));
        // Exactly 24 h old is not more than 24 h old.
        assert_eq!(retire_count(&[1; 4], days(1), now, ages), Ok(3));
        assert_eq!(retire_count(&[1; 4], days(7), now, ages), Ok(0));
        assert_eq!(
            retire_count(&[1; 4], days(u64::MAX), now, ages),
            Ok(0),
            "no overflow"
        );
        // Either rule retires; the age is asked only once size no longer decides.
        let mut asked = Vec::new();
        let both = Retention { size: 2, days: 2 };
        let got = retire_count(&[1; 4], both, now, |i| -> Result<_, ()> {
            asked.push(i);
            Ok(newest[i])
        });
        assert_eq!(got, Ok(3));
        assert_eq!(asked, [2, 3]);
        // A failure to read a segment is the caller's to handle.
        assert_eq!(
            retire_count(&[1; 4], days(2), now, |_| Err("io")),
            Err("io")
        );
    }

    fn any_summary() -> impl Strategy<Value = Summary> {
        (
            any::<u64>(),
            prop::option::weighted(0.5, any::<u64>()),
            prop::option::weighted(0.3, any::<u64>()),
            prop::collection::btree_map(0i32..3_652_059, 1..u64::MAX >> 8, 0..50),
        )
            .prop_map(|(folded_through, corrupt, damaged, days)| Summary {
                folded_through,
                corrupt: corrupt.unwrap_or(0),
                damaged: damaged.unwrap_or(0),
                days: days
                    .into_iter()
                    .filter_map(|(d, c)| Some((NaiveDate::from_num_days_from_ce_opt(d)?, c)))
                    .collect(),
            })
    }

    proptest! {
        #[test]
        fn summary_text_round_trips(s in any_summary()) {
            let text = s.to_text();
            prop_assert_eq!(Summary::parse(text.as_bytes()), Ok(s));
        }

        #[test]
        fn any_summary_cut_short_is_damaged_and_keeps_its_number(
            s in any_summary(),
            cut in any::<prop::sample::Index>(),
        ) {
            let text = s.to_text();
            let cut = cut.index(text.len());
            prop_assert!(Summary::parse(&text.as_bytes()[..cut]).is_err());
            let first_line = text.find('\n').unwrap_or(text.len());
            let head = folded_through(&text.as_bytes()[..cut]);
            prop_assert_eq!(head, (cut > first_line).then_some(s.folded_through));
        }

        #[test]
        fn parsing_any_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = Summary::parse(&bytes);
        }
    }
}
