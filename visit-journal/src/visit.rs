//! The record: one visit, one line. Formatting and parsing only, no I/O.
//!
//! This module owns the line format. Everything else handles lines as opaque bytes ending in
//! `\n`.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use chrono::{DateTime, Datelike, FixedOffset, Local, NaiveDate, NaiveTime, TimeZone, Timelike};

use crate::error::Error;

/// The longest line, in bytes and without its `\n`, that readers accept as a record.
///
/// The longest record this crate writes is 83 bytes (nanoseconds, and an IPv6 address in its
/// longest display form); the margin leaves room for other writers. A longer line is reported
/// as corrupt without being buffered, so a damaged file cannot make a reader use more memory.
pub(crate) const MAX_LINE: usize = 4096;

/// One visit: when it happened and who made it.
///
/// A `Visit` is a plain value. Its types are the guarantee that nothing but a timestamp and an
/// IP address can reach the file: no header, string or newline from a request can become a
/// line.
///
/// Its [`Display`](fmt::Display) form is the record as it appears in the file (without the
/// newline), and [`FromStr`] parses it back:
///
/// ```
/// use visit_journal::Visit;
///
/// # fn main() -> visit_journal::Result<()> {
/// let visit: Visit = "2026-11-26T10:44:36.123+03:00 - 10.0.0.7".parse()?;
/// assert_eq!(visit.ip.to_string(), "10.0.0.7");
/// assert_eq!(visit.to_string(), "2026-11-26T10:44:36.123+03:00 - 10.0.0.7");
///
/// // Lines written by the classic lab app, without fractional seconds, are read as they are.
/// let old: Visit = "2022-11-29T10:44:36+03:00 - 172.17.0.1".parse()?;
/// assert_eq!(old.to_string(), "2022-11-29T10:44:36.000+03:00 - 172.17.0.1");
/// # Ok(())
/// # }
/// ```
///
/// # Exactness
///
/// `Display` prints the fraction of a second with 3 digits when the time is a whole number of
/// milliseconds (always the case for [`Visit::now`]), otherwise with 6 or 9, so that parsing
/// the output gives back the same value, offset included, for every representable visit: a
/// year from 0000 to 9999 and a UTC offset of whole minutes, which is what RFC 3339 can
/// express. [`Visit::check`] tells whether a visit is representable;
/// [`Journal::append`](crate::Journal::append) refuses one that is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Visit {
    /// When the visit happened, with the UTC offset it is written with.
    pub at: DateTime<FixedOffset>,
    /// The client's address.
    pub ip: IpAddr,
}

impl Visit {
    /// A visit at `at` from `ip`.
    pub fn new(at: DateTime<FixedOffset>, ip: IpAddr) -> Visit {
        Visit { at, ip }
    }

    /// A visit from `ip` happening now, in the system's local UTC offset, to the millisecond.
    pub fn now(ip: IpAddr) -> Visit {
        let now = Local::now().fixed_offset();
        Visit::at_millis(now, ip)
    }

    /// A visit from `ip` happening now, written with the given UTC offset, to the millisecond.
    pub fn now_with_offset(ip: IpAddr, offset: FixedOffset) -> Visit {
        let now = chrono::Utc::now().with_timezone(&offset);
        Visit::at_millis(now, ip)
    }

    fn at_millis(at: DateTime<FixedOffset>, ip: IpAddr) -> Visit {
        let millis = at.nanosecond() / 1_000_000 * 1_000_000;
        // `with_nanosecond` only fails for values >= 2e9; `millis` is at most `nanosecond()`.
        let at = at.with_nanosecond(millis).unwrap_or(at);
        Visit { at, ip }
    }

    /// Checks that the visit can be written as a record and read back unchanged.
    ///
    /// # Errors
    ///
    /// [`Error::Unrepresentable`] if the year is outside 0000–9999 or the UTC offset is not a
    /// whole number of minutes.
    pub fn check(&self) -> Result<(), Error> {
        if !(0..=9999).contains(&self.at.year()) {
            return Err(Error::Unrepresentable {
                reason: "year outside 0000-9999",
            });
        }
        if self.at.offset().local_minus_utc() % 60 != 0 {
            return Err(Error::Unrepresentable {
                reason: "utc offset is not a whole number of minutes",
            });
        }
        Ok(())
    }
}

impl Visit {
    /// The visit's timestamp exactly as its record writes it (`2026-11-26T10:44:36.123+03:00`):
    /// for showing the time in another format (a JSON field, say) without a second copy of the
    /// line format's rules.
    ///
    /// ```
    /// # fn main() -> visit_journal::Result<()> {
    /// let visit: visit_journal::Visit = "2022-11-29T10:44:36+03:00 - 172.17.0.1".parse()?;
    /// assert_eq!(visit.time().to_string(), "2022-11-29T10:44:36.000+03:00");
    /// # Ok(())
    /// # }
    /// ```
    pub fn time(&self) -> impl fmt::Display + '_ {
        Timestamp(&self.at)
    }
}

/// Reduces an address to its network, so that a visitor is not identified by it: an IPv4
/// address to its /24 (`10.0.7.23` becomes `10.0.7.0`), an IPv6 address to its /48
/// (`2001:db8:1:2::5` becomes `2001:db8:1::`).
///
/// This is the data minimisation of the GDPR (Art. 5(1)(c)), as done by Google Analytics'
/// former `anonymize_ip` and Matomo: a /24 is one of 256 addresses of an access network, a
/// /48 one site's allocation, enough to count visitors by network but not to single one out.
/// The result is still an [`IpAddr`], so a journal of reduced addresses has the same format.
///
/// An IPv4-mapped IPv6 address (`::ffff:10.0.7.23`, what a dual-stack socket reports for an
/// IPv4 client) is an IPv4 client: it is reduced to its /24 and keeps its mapped form
/// (`::ffff:10.0.7.0`). Reducing is idempotent: a reduced address stays as it is.
///
/// ```
/// use std::net::IpAddr;
/// use visit_journal::anonymize;
///
/// let ip = |s: &str| s.parse::<IpAddr>().unwrap();
/// assert_eq!(anonymize(ip("10.0.7.23")), ip("10.0.7.0"));
/// assert_eq!(anonymize(ip("2001:db8:1:2::5")), ip("2001:db8:1::"));
/// assert_eq!(anonymize(ip("::ffff:10.0.7.23")), ip("::ffff:10.0.7.0"));
/// ```
pub fn anonymize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & IPV4_KEEP)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V6(Ipv4Addr::from(u32::from(v4) & IPV4_KEEP).to_ipv6_mapped()),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & IPV6_KEEP)),
        },
    }
}

/// The bits [`anonymize`] keeps of an IPv4 address: its /24.
const IPV4_KEEP: u32 = !0 << (32 - 24);

/// The bits [`anonymize`] keeps of an IPv6 address: its /48.
const IPV6_KEEP: u128 = !0 << (128 - 48);

impl fmt::Display for Visit {
    /// Writes the record as it appears in the file, without the trailing newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} - {}", Timestamp(&self.at), self.ip)
    }
}

/// The timestamp of a record: RFC 3339, the fraction with 3, 6 or 9 digits (the fewest that
/// are exact), the visit's own offset.
struct Timestamp<'a>(&'a DateTime<FixedOffset>);

impl fmt::Display for Timestamp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.0;
        let nanos = at.nanosecond();
        // chrono keeps a leap second as nanoseconds >= 1e9 in second 59.
        let (second, nanos) = if nanos >= 1_000_000_000 {
            (at.second() + 1, nanos - 1_000_000_000)
        } else {
            (at.second(), nanos)
        };
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            at.year(),
            at.month(),
            at.day(),
            at.hour(),
            at.minute(),
            second
        )?;
        if nanos % 1_000_000 == 0 {
            write!(f, ".{:03}", nanos / 1_000_000)?;
        } else if nanos % 1_000 == 0 {
            write!(f, ".{:06}", nanos / 1_000)?;
        } else {
            write!(f, ".{nanos:09}")?;
        }
        let offset = at.offset().local_minus_utc();
        let sign = if offset < 0 { '-' } else { '+' };
        let offset = offset.unsigned_abs();
        write!(f, "{sign}{:02}:{:02}", offset / 3600, offset / 60 % 60)?;
        if !offset.is_multiple_of(60) {
            // Not RFC 3339, and refused by `check`; printed so that nothing is hidden.
            write!(f, ":{:02}", offset % 60)?;
        }
        Ok(())
    }
}

impl FromStr for Visit {
    type Err = Error;

    /// Parses a record (without its newline).
    ///
    /// Accepts an RFC 3339 timestamp with `T` (or `t`) between date and time, 0 to 9
    /// fractional digits and an offset `Z`/`z` or `±HH:MM`, then ` - `, then an IPv4 or IPv6
    /// address.
    ///
    /// # Errors
    ///
    /// [`Error::Parse`] naming the first thing that is wrong.
    fn from_str(s: &str) -> Result<Visit, Error> {
        parse_record(s.as_bytes()).map_err(|reason| Error::Parse { reason })
    }
}

/// Appends `visit` and a newline to `out`.
pub(crate) fn encode(visit: &Visit, out: &mut Vec<u8>) {
    // A `String` avoids going through `io::Write`; the extra copy is a few dozen bytes.
    let mut line = String::with_capacity(48);
    // Writing into a String cannot fail.
    let _ = write!(line, "{visit}");
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
}

/// Parses one record, given without its `\n`. Returns the reason on failure.
pub(crate) fn parse_record(line: &[u8]) -> Result<Visit, &'static str> {
    if line.is_empty() {
        return Err("empty line");
    }
    if line.len() > MAX_LINE {
        return Err("line too long");
    }
    if line.contains(&0) {
        return Err("NUL byte in line (debris of an unsynced write?)");
    }
    let sep = find(line, b" - ").ok_or("missing ' - ' between time and address")?;
    let at = parse_timestamp(&line[..sep])?;
    let ip = std::str::from_utf8(&line[sep + 3..])
        .ok()
        .and_then(|s| s.parse::<IpAddr>().ok())
        .ok_or("bad ip address")?;
    Ok(Visit { at, ip })
}

/// The timestamp's text of a line that [`parse_record`] accepted: what precedes ` - `.
pub(crate) fn written_time(line: &[u8]) -> &str {
    let time = find(line, b" - ").map_or(line, |sep| &line[..sep]);
    // A parsed timestamp is ASCII; the fallback cannot happen.
    std::str::from_utf8(time).unwrap_or("")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A strict RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS[.F{1,9}](Z|±HH:MM)`.
fn parse_timestamp(s: &[u8]) -> Result<DateTime<FixedOffset>, &'static str> {
    const BAD: &str = "bad timestamp";
    let mut p = Cursor { s, pos: 0 };
    let year = p.digits(4).ok_or(BAD)?;
    p.expect(b'-').ok_or(BAD)?;
    let month = p.digits(2).ok_or(BAD)?;
    p.expect(b'-').ok_or(BAD)?;
    let day = p.digits(2).ok_or(BAD)?;
    p.expect_any(b"Tt")
        .ok_or("bad timestamp: expected 'T' between date and time")?;
    let hour = p.digits(2).ok_or(BAD)?;
    p.expect(b':').ok_or(BAD)?;
    let minute = p.digits(2).ok_or(BAD)?;
    p.expect(b':').ok_or(BAD)?;
    let second = p.digits(2).ok_or(BAD)?;
    let mut nanos = 0;
    if p.peek() == Some(b'.') {
        p.pos += 1;
        let start = p.pos;
        while p.peek().is_some_and(|b| b.is_ascii_digit()) {
            p.pos += 1;
        }
        let n = p.pos - start;
        if n == 0 || n > 9 {
            return Err("bad timestamp: expected 1 to 9 fractional digits");
        }
        nanos = s[start..p.pos]
            .iter()
            .fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0'))
            * 10u32.pow(9 - n as u32);
    }
    let offset_secs = match p.next() {
        Some(b'Z' | b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let h = p.digits(2).ok_or(BAD)?;
            p.expect(b':').ok_or(BAD)?;
            let m = p.digits(2).ok_or(BAD)?;
            if h > 23 || m > 59 {
                return Err("bad timestamp: utc offset out of range");
            }
            let secs = (h * 3600 + m * 60) as i32;
            if sign == b'-' { -secs } else { secs }
        }
        _ => return Err("bad timestamp: expected 'Z' or a utc offset"),
    };
    if p.pos != s.len() {
        return Err("bad timestamp: unexpected text after the utc offset");
    }
    let date =
        NaiveDate::from_ymd_opt(year as i32, month, day).ok_or("bad timestamp: no such date")?;
    let time = match second {
        0..=59 => NaiveTime::from_hms_nano_opt(hour, minute, second, nanos),
        // A leap second: chrono stores it as second 59 with nanoseconds >= 1e9.
        60 => NaiveTime::from_hms_nano_opt(hour, minute, 59, 1_000_000_000 + nanos),
        _ => None,
    }
    .ok_or("bad timestamp: no such time of day")?;
    let offset = FixedOffset::east_opt(offset_secs).ok_or("bad timestamp: bad utc offset")?;
    offset
        .from_local_datetime(&date.and_time(time))
        .single()
        .ok_or("bad timestamp: no such time")
}

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    fn expect_any(&mut self, want: &[u8]) -> Option<()> {
        want.contains(&self.next()?).then_some(())
    }

    /// Exactly `n` ASCII digits as a number.
    fn digits(&mut self, n: usize) -> Option<u32> {
        let digits = self.s.get(self.pos..self.pos + n)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.pos += n;
        Some(
            digits
                .iter()
                .fold(0, |acc, b| acc * 10 + u32::from(b - b'0')),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn visit(s: &str) -> Visit {
        s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn parses_and_prints_the_contract_example() {
        let v = visit("2026-11-26T10:44:36.123+03:00 - 10.0.0.7");
        assert_eq!(v.at.timestamp_subsec_millis(), 123);
        assert_eq!(v.at.offset().local_minus_utc(), 3 * 3600);
        assert_eq!(v.to_string(), "2026-11-26T10:44:36.123+03:00 - 10.0.0.7");
    }

    #[test]
    fn accepts_the_classic_lab_format() {
        let v = visit("2022-11-29T10:44:36+03:00 - 172.17.0.1");
        assert_eq!(v.to_string(), "2022-11-29T10:44:36.000+03:00 - 172.17.0.1");
        // Python's isoformat() with microseconds, and UTC written as Z.
        let v = visit("2022-11-29T07:44:36.123456Z - ::1");
        assert_eq!(v.to_string(), "2022-11-29T07:44:36.123456+00:00 - ::1");
    }

    #[test]
    fn prints_the_shortest_exact_fraction() {
        assert!(
            visit("2026-01-01T00:00:00.1-05:00 - ::1")
                .to_string()
                .contains(":00.100-05:00")
        );
        assert!(
            visit("2026-01-01T00:00:00.1234Z - ::1")
                .to_string()
                .contains(":00.123400+")
        );
        assert!(
            visit("2026-01-01T00:00:00.000000001Z - ::1")
                .to_string()
                .contains(".000000001+")
        );
    }

    #[test]
    fn keeps_leap_seconds() {
        let v = visit("2016-12-31T23:59:60.500Z - 1.2.3.4");
        assert_eq!(v.to_string(), "2016-12-31T23:59:60.500+00:00 - 1.2.3.4");
    }

    #[test]
    fn rejects_bad_records_with_a_reason() {
        for (line, reason) in [
            ("", "empty line"),
            (
                "2026-11-26T10:44:36.123+03:00 10.0.0.7",
                "missing ' - ' between time and address",
            ),
            (
                "2026-11-26T10:44:36.123+03:00 - 10.0.0.256",
                "bad ip address",
            ),
            (
                "2026-11-26T10:44:36.123+03:00 - 10.0.0.7\r",
                "bad ip address",
            ),
            (
                "2026-11-26T10:44:36.123+03:00 - 10.0.0.7 - 1.2.3.4",
                "bad ip address",
            ),
            (
                "2026-11-26 10:44:36+03:00 - 10.0.0.7",
                "bad timestamp: expected 'T' between date and time",
            ),
            (
                "2026-11-26T10:44:36.+03:00 - 10.0.0.7",
                "bad timestamp: expected 1 to 9 fractional digits",
            ),
            (
                "2026-11-26T10:44:36.1234567891+03:00 - 1.1.1.1",
                "bad timestamp: expected 1 to 9 fractional digits",
            ),
            (
                "2026-11-26T10:44:36 - 10.0.0.7",
                "bad timestamp: expected 'Z' or a utc offset",
            ),
            (
                "2026-02-30T10:44:36Z - 10.0.0.7",
                "bad timestamp: no such date",
            ),
            (
                "2026-11-26T24:00:00Z - 10.0.0.7",
                "bad timestamp: no such time of day",
            ),
            (
                "2026-11-26T10:44:36+24:00 - 10.0.0.7",
                "bad timestamp: utc offset out of range",
            ),
            (
                "2026-11-26T10:44:36+03:00x - 10.0.0.7",
                "bad timestamp: unexpected text after the utc offset",
            ),
            ("+2026-11-26T10:44:36Z - 10.0.0.7", "bad timestamp"),
            (
                "2026-11-26T10:44:36\0Z - 10.0.0.7",
                "NUL byte in line (debris of an unsynced write?)",
            ),
        ] {
            assert_eq!(
                parse_record(line.as_bytes()).map(|_| ()),
                Err(reason),
                "{line:?}"
            );
        }
    }

    #[test]
    fn a_forged_line_cannot_hide_in_an_address() {
        // Newlines never reach a record: the address type has no room for them.
        assert!(
            "2026-11-26T10:44:36Z - 1.2.3.4\n2026-11-26T10:44:36Z - 6.6.6.6"
                .parse::<Visit>()
                .is_err()
        );
    }

    #[test]
    fn check_refuses_what_rfc_3339_cannot_express() {
        let ip = "::1".parse().unwrap();
        let odd = FixedOffset::east_opt(3600 + 30).unwrap();
        let v = Visit::new(odd.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(), ip);
        assert!(matches!(v.check(), Err(Error::Unrepresentable { .. })));
        let utc = FixedOffset::east_opt(0).unwrap();
        let v = Visit::new(utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(), ip);
        assert!(matches!(v.check(), Err(Error::Unrepresentable { .. })));
        assert!(Visit::now(ip).check().is_ok());
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn anonymize_keeps_the_slash_24_and_slash_48() {
        for (full, reduced) in [
            ("10.0.7.23", "10.0.7.0"),
            ("10.0.7.0", "10.0.7.0"),
            ("255.255.255.255", "255.255.255.0"),
            ("0.0.0.0", "0.0.0.0"),
            ("2001:db8:1:2::5", "2001:db8:1::"),
            ("2001:db8:1:ffff:ffff:ffff:ffff:ffff", "2001:db8:1::"),
            ("::1", "::"),
            ("fe80::1", "fe80::"),
            ("::ffff:10.0.7.23", "::ffff:10.0.7.0"),
        ] {
            assert_eq!(anonymize(ip(full)), ip(reduced), "{full}");
        }
    }

    #[test]
    fn written_time_is_the_text_before_the_separator() {
        for line in [
            "2022-11-29T10:44:36+03:00 - 172.17.0.1",
            "2022-11-29T07:44:36.123456z - ::1",
            "2026-11-26T10:44:36.123+03:00 - 10.0.0.7",
        ] {
            let v = visit(line);
            let time = written_time(line.as_bytes());
            assert_eq!(format!("{time} - {}", v.ip), line);
        }
    }

    /// Any address, with IPv4-mapped IPv6 ones often enough to be tested.
    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<IpAddr>(),
            any::<Ipv4Addr>().prop_map(|a| IpAddr::V6(a.to_ipv6_mapped())),
        ]
    }

    proptest! {
        #[test]
        fn anonymize_is_idempotent_and_keeps_the_prefix(raw in any_ip()) {
            let reduced = anonymize(raw);
            prop_assert_eq!(anonymize(reduced), reduced);
            // The kept bits are the address's, the rest are zero.
            let (raw_bits, reduced_bits, keep) = match (raw, reduced) {
                (IpAddr::V4(a), IpAddr::V4(r)) => {
                    (u128::from(u32::from(a)), u128::from(u32::from(r)), u128::from(IPV4_KEEP))
                }
                (IpAddr::V6(a), IpAddr::V6(r)) => match a.to_ipv4_mapped() {
                    Some(a4) => {
                        let r4 = r.to_ipv4_mapped();
                        prop_assert!(r4.is_some(), "{raw} lost its mapped form: {reduced}");
                        let r4 = r4.map_or(0, u32::from);
                        (u128::from(u32::from(a4)), u128::from(r4), u128::from(IPV4_KEEP))
                    }
                    None => (u128::from(a), u128::from(r), IPV6_KEEP),
                },
                _ => {
                    return Err(TestCaseError::fail(format!("{raw} changed family: {reduced}")));
                }
            };
            prop_assert_eq!(reduced_bits, raw_bits & keep, "{} -> {}", raw, reduced);
        }
    }

    #[test]
    fn now_is_whole_milliseconds() {
        let v = Visit::now_with_offset(
            "10.0.0.1".parse().unwrap(),
            FixedOffset::east_opt(-5 * 3600).unwrap(),
        );
        assert_eq!(v.at.nanosecond() % 1_000_000, 0);
        assert_eq!(v.to_string().parse::<Visit>().unwrap(), v);
    }
}
