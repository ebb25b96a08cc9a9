//! Writing JSON: every JSON text the server sends or logs is written with this module.
//!
//! [`string`] escapes a string literal; [`Object`] and [`Array`] write members and elements
//! with their commas; [`Items`] is the comma state alone, for an array that is written in
//! pieces (a streamed body).
//!
//! Strings are escaped as JSON requires (quotes, backslashes and every control character),
//! and U+2028/U+2029 too: they are valid JSON but break JavaScript log viewers. So a hostile
//! request path or header can neither break a log line nor forge a field.
//!
//! Why not serde_json's writer (serde_json is a dependency already, for parsing peers'
//! answers): its escaping leaves DEL, C1 controls and U+2028/U+2029 as they are, and the
//! bodies keep a line layout (`[`, one element per line, `]`) that clients of the text-minded
//! lab read with `grep`; a derive-based writer would also add `serde_derive` to the build.
//! This writer is about 150 lines of code.

use std::fmt::{self, Write as _};

/// Appends `s` as a JSON string literal.
pub fn string(out: &mut String, s: &str) {
    out.push('"');
    escape(out, s);
    out.push('"');
}

/// Appends anything printable as a JSON string literal, without an intermediate `String`.
///
/// The value is written as it is and then checked: what the server displays (timestamps,
/// addresses, numbers) almost never needs an escape, and escaping each of the many small
/// pieces a `Display` writes cost a third of `/visits?format=json`'s speed (0.52 s → 0.68 s for
/// 1.6 M visits). Only a value that does need escaping is moved and escaped.
pub fn display(out: &mut String, value: &dyn fmt::Display) {
    out.push('"');
    let start = out.len();
    // Writing into a String cannot fail.
    let _ = write!(out, "{value}");
    if out.as_bytes()[start..].iter().any(|&b| needs_care(b)) {
        let raw = out.split_off(start);
        escape(out, &raw);
    }
    out.push('"');
}

/// True for a byte that may need an escape: ASCII controls, `"`, `\`, DEL, and every byte of a
/// non-ASCII character (C1 controls and U+2028/U+2029 are among them; [`escape`] decides).
fn needs_care(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\' || b >= 0x7f
}

/// Appends `s` escaped for the inside of a JSON string literal: runs of characters that need
/// no escape (all of a timestamp or an address) are copied whole.
fn escape(out: &mut String, s: &str) {
    let mut clean = 0;
    for (i, c) in s.char_indices() {
        let short = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => "",
            _ => continue,
        };
        out.push_str(&s[clean..i]);
        clean = i + c.len_utf8();
        if short.is_empty() {
            // Writing into a String cannot fail.
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push_str(short);
        }
    }
    out.push_str(&s[clean..]);
}

/// The separators of a list being written: `first` before the first item, `sep` before each
/// of the others.
#[derive(Debug, Clone, Copy)]
pub struct Items {
    first: &'static str,
    sep: &'static str,
    any: bool,
}

impl Items {
    /// No item written yet.
    pub const fn new(first: &'static str, sep: &'static str) -> Items {
        Items {
            first,
            sep,
            any: false,
        }
    }

    /// Writes the separator that comes before the next item.
    pub fn next(&mut self, out: &mut String) {
        out.push_str(if self.any { self.sep } else { self.first });
        self.any = true;
    }

    /// True once an item was written.
    pub fn any(&self) -> bool {
        self.any
    }
}

/// A JSON object being written; [`Object::end`] closes it.
#[derive(Debug)]
pub struct Object<'a> {
    out: &'a mut String,
    members: Items,
}

impl<'a> Object<'a> {
    /// Opens an object.
    pub fn new(out: &'a mut String) -> Object<'a> {
        out.push('{');
        Object {
            out,
            members: Items::new("", ","),
        }
    }

    /// Writes the key of a member and returns the text to write its value into (with
    /// [`Object::new`], [`Array::new`] or the functions of this module).
    pub fn key(&mut self, key: &str) -> &mut String {
        self.members.next(self.out);
        string(self.out, key);
        self.out.push(':');
        self.out
    }

    /// Like [`Object::key`], with the member on a new line (unless it is the first).
    pub fn key_on_new_line(&mut self, key: &str) -> &mut String {
        if self.members.any {
            self.out.push_str(",\n");
        }
        self.members.any = true;
        string(self.out, key);
        self.out.push(':');
        self.out
    }

    /// A string member.
    pub fn str(&mut self, key: &str, value: &str) -> &mut Object<'a> {
        string(self.key(key), value);
        self
    }

    /// A member written as a string with `Display`.
    pub fn display(&mut self, key: &str, value: &dyn fmt::Display) -> &mut Object<'a> {
        display(self.key(key), value);
        self
    }

    /// A number member.
    pub fn u64(&mut self, key: &str, value: u64) -> &mut Object<'a> {
        // Writing into a String cannot fail.
        let _ = write!(self.key(key), "{value}");
        self
    }

    /// A number member, or `null`.
    pub fn opt_u64(&mut self, key: &str, value: Option<u64>) -> &mut Object<'a> {
        match value {
            Some(n) => self.u64(key, n),
            None => {
                self.key(key).push_str("null");
                self
            }
        }
    }

    /// A boolean member.
    pub fn bool(&mut self, key: &str, value: bool) -> &mut Object<'a> {
        self.key(key).push_str(if value { "true" } else { "false" });
        self
    }

    /// Closes the object (once: it is the end of a chain of members).
    pub fn end(&mut self) {
        self.out.push('}');
    }
}

/// A JSON array being written; [`Array::end`] closes it.
#[derive(Debug)]
pub struct Array<'a> {
    out: &'a mut String,
    items: Items,
}

impl<'a> Array<'a> {
    /// Opens an array whose elements are separated by `,`.
    pub fn new(out: &'a mut String) -> Array<'a> {
        Array::with(out, Items::new("", ","))
    }

    /// Opens an array whose elements each start a line.
    pub fn one_per_line(out: &'a mut String) -> Array<'a> {
        Array::with(out, Items::new("\n", ",\n"))
    }

    fn with(out: &'a mut String, items: Items) -> Array<'a> {
        out.push('[');
        Array { out, items }
    }

    /// Writes the separator before the next element and returns the text to write it into.
    pub fn item(&mut self) -> &mut String {
        self.items.next(self.out);
        self.out
    }

    /// Opens an object as the next element.
    pub fn object(&mut self) -> Object<'_> {
        Object::new(self.item())
    }

    /// Closes the array.
    pub fn end(self) {
        self.out.push(']');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_control_character() {
        let mut s = String::new();
        string(&mut s, "\u{0}\u{1f}\u{7f}\u{2028}é");
        assert_eq!(s, "\"\\u0000\\u001f\\u007f\\u2028é\"");
        let mut s = String::new();
        string(&mut s, "/a\"b\\c\nd\r\t");
        assert_eq!(s, "\"/a\\\"b\\\\c\\nd\\r\\t\"");
    }

    #[test]
    fn displayed_values_are_escaped_like_strings() {
        for raw in [
            "10.0.0.7",
            "2026-11-26T10:44:36.123+03:00",
            "\u{0}\u{7f}\u{2028}é",
            "/a\"b\\c\nd",
        ] {
            let (mut shown, mut written) = (String::from("x"), String::from("x"));
            display(&mut shown, &raw);
            string(&mut written, raw);
            assert_eq!(shown, written, "{raw:?}");
        }
    }

    #[test]
    fn objects_and_arrays_place_their_commas() {
        let mut out = String::new();
        let mut o = Object::new(&mut out);
        o.str("a", "x")
            .u64("n", 3)
            .bool("ok", true)
            .opt_u64("none", None);
        let mut list = Array::new(o.key("list"));
        list.object().u64("i", 1).end();
        list.object().u64("i", 2).end();
        list.end();
        Array::new(o.key("empty")).end();
        o.display("peer", &"10.0.0.7:5000");
        o.end();
        assert_eq!(
            out,
            "{\"a\":\"x\",\"n\":3,\"ok\":true,\"none\":null,\"list\":[{\"i\":1},{\"i\":2}],\
             \"empty\":[],\"peer\":\"10.0.0.7:5000\"}"
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["list"][1]["i"], 2);
    }

    #[test]
    fn line_layouts() {
        let mut out = String::new();
        let mut a = Array::one_per_line(&mut out);
        a.item().push('1');
        a.item().push('2');
        a.end();
        assert_eq!(out, "[\n1,\n2]");
        let mut out = String::new();
        let mut o = Object::new(&mut out);
        o.u64("a", 1);
        o.key_on_new_line("b").push('2');
        o.u64("c", 3);
        o.end();
        assert_eq!(out, "{\"a\":1,\n\"b\":2,\"c\":3}");
        let mut items = Items::new("", ",");
        let mut out = String::new();
        for i in 0..3 {
            items.next(&mut out);
            out.push_str(&i.to_string());
        }
        assert_eq!(out, "0,1,2");
    }
}
