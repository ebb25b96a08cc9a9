//! Where the valid prefix of a journal ends. Pure decisions over bytes; the writer does the I/O.
//!
//! Two kinds of damage are repaired, both only under the lock:
//!
//! - A **torn tail**: bytes after the last `\n`, left by a writer that died mid-write. Cut
//!   before every append.
//! - **Power-loss debris**: NUL bytes where a file system extended the file but never wrote
//!   the data. Nothing acknowledged can follow it (an acknowledgement comes after an
//!   `fdatasync` that persisted every earlier byte), so on open the repair cuts from the start
//!   of the first line containing a NUL to the end, if that line starts within the last
//!   [`DEBRIS_WINDOW`] bytes.
//!
//! Both cuts are refused when the bytes to be cut do not look like debris of records
//! ([`looks_like_debris`]): pointing a journal at the wrong file must not truncate it.

use crate::visit::MAX_LINE;

/// How far from the end power-loss debris is looked for and cut on open.
pub(crate) const DEBRIS_WINDOW: u64 = 1 << 20;

/// The longest unterminated tail that is cut as a torn record.
pub(crate) const MAX_TORN: u64 = MAX_LINE as u64;

/// What to do about the end of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// The file ends with a whole line (or is empty).
    Nothing,
    /// Truncate the file to this length.
    At(u64),
    /// The bytes from this offset to the end are not a torn record; refuse to cut them.
    Refuse { offset: u64, reason: &'static str },
}

/// True if `bytes` could be the remains of records: NUL debris or the characters a record
/// (ours, or the classic lab's) is made of. Anything else means the file is not a journal, or
/// is damaged in a way no crash of a writer explains.
pub(crate) fn looks_like_debris(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| {
        b == 0 || b == b'\n' || b == b' ' || b.is_ascii_alphanumeric() || b".:+-".contains(&b)
    })
}

/// Decides about the torn tail: the bytes from `start` (just after the last `\n`, or 0) to
/// the end of a file of length `len`.
///
/// `tail` holds the first `min(len - start, MAX_TORN + 1)` of those bytes: enough to judge a
/// torn record, and bounded however long the damage is.
pub(crate) fn torn_tail(start: u64, len: u64, tail: &[u8]) -> Cut {
    if start == len {
        Cut::Nothing
    } else if len - start > MAX_TORN {
        Cut::Refuse {
            offset: start,
            reason: "unterminated last line is too long to be a torn record",
        }
    } else if !looks_like_debris(tail) {
        Cut::Refuse {
            offset: start,
            reason: "unterminated last line is not a torn record",
        }
    } else {
        Cut::At(start)
    }
}

/// Decides about power-loss debris, given the last bytes of a file of length `len`.
///
/// `window` holds the last `window.len()` bytes of the file: `min(len, DEBRIS_WINDOW + 1)`,
/// so that the byte before a line starting exactly `DEBRIS_WINDOW` bytes from the end is seen.
pub(crate) fn power_loss_debris(len: u64, window: &[u8]) -> Cut {
    let window_start = len - window.len() as u64;
    let Some(nul) = window.iter().position(|&b| b == 0) else {
        return Cut::Nothing;
    };
    let line_start = match window[..nul].iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None if window_start == 0 => 0,
        None => {
            return Cut::Refuse {
                offset: window_start,
                reason: "NUL byte more than 1 MiB before the end of the file",
            };
        }
    };
    let offset = window_start + line_start as u64;
    if len - offset > DEBRIS_WINDOW {
        return Cut::Refuse {
            offset,
            reason: "NUL byte more than 1 MiB before the end of the file",
        };
    }
    if !looks_like_debris(&window[line_start..]) {
        return Cut::Refuse {
            offset,
            reason: "NUL bytes followed by data that is not a record",
        };
    }
    Cut::At(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn torn(file: &[u8]) -> Cut {
        let start = file.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let keep = (file.len() - start).min(MAX_TORN as usize + 1);
        torn_tail(start as u64, file.len() as u64, &file[start..start + keep])
    }

    fn debris(file: &[u8]) -> Cut {
        let keep = file.len().min(DEBRIS_WINDOW as usize + 1);
        power_loss_debris(file.len() as u64, &file[file.len() - keep..])
    }

    const LINE: &[u8] = b"2026-11-26T10:44:36.123+03:00 - 10.0.0.7\n";

    #[test]
    fn whole_lines_need_nothing() {
        assert_eq!(torn(b""), Cut::Nothing);
        assert_eq!(torn(LINE), Cut::Nothing);
        assert_eq!(debris(LINE), Cut::Nothing);
    }

    #[test]
    fn torn_tail_is_cut_after_the_last_newline() {
        let mut file = LINE.to_vec();
        file.extend_from_slice(b"2026-11-26T10:4");
        assert_eq!(torn(&file), Cut::At(LINE.len() as u64));
        assert_eq!(torn(b"2026-11"), Cut::At(0));
    }

    #[test]
    fn long_or_foreign_tails_are_refused() {
        let mut file = LINE.to_vec();
        file.extend(std::iter::repeat_n(b'1', MAX_TORN as usize + 1));
        assert!(matches!(torn(&file), Cut::Refuse { offset, .. } if offset == LINE.len() as u64));
        assert!(matches!(torn(&vec![b'1'; 10_000]), Cut::Refuse { .. }));
        assert!(matches!(torn(b"\x7fELF\x02\x01"), Cut::Refuse { .. }));
    }

    #[test]
    fn nul_debris_is_cut_from_its_line() {
        let mut file = LINE.to_vec();
        file.extend_from_slice(
            b"2026-11-26T10:44\0\0\0\0\n\0\0\0\n2026-11-26T10:44:36.123+03:00 - 10.0.0.8\n",
        );
        assert_eq!(debris(&file), Cut::At(LINE.len() as u64));
        assert_eq!(debris(b"\0\0\0\0"), Cut::At(0));
    }

    #[test]
    fn deep_or_foreign_nul_is_refused() {
        // A NUL whose line starts before the window is corruption, not debris.
        let mut file = vec![b'1'; DEBRIS_WINDOW as usize + 10];
        file.push(0);
        assert!(matches!(debris(&file), Cut::Refuse { .. }));
        // A NUL deeper than the window is not looked for on open: readers report it.
        let mut file = b"\0\n".to_vec();
        while file.len() as u64 <= DEBRIS_WINDOW + 10 {
            file.extend_from_slice(LINE);
        }
        assert_eq!(debris(&file), Cut::Nothing);
        assert!(matches!(
            debris(b"abc\n\0\x7fELF"),
            Cut::Refuse { offset: 4, .. }
        ));
    }
}
