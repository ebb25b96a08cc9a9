//! Any text: parsing never panics, and whatever parses prints back to something that parses to
//! the same visit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use visit_journal::Visit;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(visit) = text.parse::<Visit>() {
        let line = visit.to_string();
        let again: Visit = line.parse().expect("a printed visit parses");
        assert_eq!(again, visit, "{text:?} -> {line:?}");
        assert_eq!(again.to_string(), line);
    }
});
