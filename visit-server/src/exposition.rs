//! The Prometheus text exposition format (0.0.4): labelled counters whose label values come
//! from one list, latency histograms, and the `# HELP`/`# TYPE` lines of a family.
//!
//! A label is an enum defined with `label!`: its variants and their label values are one
//! list, so the values a family renders (every one, including those still at 0) cannot drift
//! from the values code counts with. A [`Counter`] is one atomic per label value, indexed by
//! the variant: updating it is one relaxed add, with no lock and no search.
//!
//! Why not the `prometheus-client` crate: it writes OpenMetrics text only (a `# EOF` line,
//! `# TYPE` without the `_total` suffix, a full stop appended to every help text, `le="1.0"`,
//! `_sum`/`_count` before the buckets), so `/metrics` would change under every scraper, alert
//! and test that reads it. A scratch crate reproducing this surface with prometheus-client
//! 0.24 added 18 packages, 3.9 s to a clean release build and 112 KB to a stripped binary
//! (590 KB unstripped); this module and the label enums are about 150 lines of code.

use std::fmt::Write as _;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A set of label values: one label enum (see `label!`), or a pair of them.
pub trait LabelSet: Copy {
    /// How many values there are.
    const COUNT: usize;
    /// The value at `index`, `0..COUNT`, in the order they are rendered.
    fn at(index: usize) -> Self;
    /// This value's index.
    fn index(self) -> usize;
    /// Writes `key="value"` pairs, one per label, with `keys` naming the labels.
    fn write(self, keys: &[&str], out: &mut String);
}

/// Defines a label enum from one list of `Variant = "value"`: the enum, `ALL`, `as_str`, and
/// its [`LabelSet`].
macro_rules! label {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $value:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in the order they are rendered.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $value,)+
                }
            }
        }

        impl $crate::exposition::LabelSet for $name {
            const COUNT: usize = $name::ALL.len();

            fn at(index: usize) -> $name {
                $name::ALL[index]
            }

            fn index(self) -> usize {
                self as usize
            }

            fn write(self, keys: &[&str], out: &mut String) {
                let key = keys.first().copied().unwrap_or("label");
                $crate::exposition::write_label(out, key, self.as_str());
            }
        }
    };
}
pub(crate) use label;

impl<A: LabelSet, B: LabelSet> LabelSet for (A, B) {
    const COUNT: usize = A::COUNT * B::COUNT;

    fn at(index: usize) -> (A, B) {
        (A::at(index / B::COUNT), B::at(index % B::COUNT))
    }

    fn index(self) -> usize {
        self.0.index() * B::COUNT + self.1.index()
    }

    fn write(self, keys: &[&str], out: &mut String) {
        self.0.write(keys, out);
        out.push(',');
        self.1.write(keys.get(1..).unwrap_or_default(), out);
    }
}

/// Writes one `key="value"` pair. Label values are this crate's constants: nothing to escape.
pub fn write_label(out: &mut String, key: &str, value: &str) {
    // Writing into a String cannot fail: the `fmt::Result`s in this module are ignored.
    let _ = write!(out, "{key}=\"{value}\"");
}

/// A counter per value of a [`LabelSet`].
#[derive(Debug)]
pub struct Counter<L> {
    counts: Box<[AtomicU64]>,
    labels: PhantomData<L>,
}

impl<L: LabelSet> Default for Counter<L> {
    fn default() -> Counter<L> {
        Counter {
            counts: (0..L::COUNT).map(|_| AtomicU64::new(0)).collect(),
            labels: PhantomData,
        }
    }
}

impl<L: LabelSet> Counter<L> {
    /// Adds one to `label`'s count.
    pub fn inc(&self, label: L) {
        self.add(label, 1);
    }

    /// Adds `n` to `label`'s count.
    pub fn add(&self, label: L, n: u64) {
        self.counts[label.index()].fetch_add(n, Relaxed);
    }

    /// `label`'s count.
    pub fn get(&self, label: L) -> u64 {
        self.counts[label.index()].load(Relaxed)
    }

    /// Writes the family: its header, then one sample per label value.
    pub fn render(&self, out: &mut String, name: &str, help: &str, keys: &[&str]) {
        family(out, name, "counter", help);
        self.samples(out, name, keys);
    }

    /// Writes one sample per label value, without the family's header.
    pub fn samples(&self, out: &mut String, name: &str, keys: &[&str]) {
        for i in 0..L::COUNT {
            out.push_str(name);
            out.push('{');
            L::at(i).write(keys, out);
            let _ = writeln!(out, "}} {}", self.counts[i].load(Relaxed));
        }
    }
}

/// Upper bounds of the latency buckets, in microseconds: 100 µs (one fast fsync) to 5 s
/// (beyond the lock timeout).
const BUCKETS_US: [u64; 15] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000,
];

/// A latency histogram: per-bucket counts (not cumulative; summed when rendered).
#[derive(Debug, Default)]
pub struct Histogram {
    /// `counts[i]` counts observations in `(BUCKETS_US[i-1], BUCKETS_US[i]]`; the last slot is
    /// `+Inf`.
    counts: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    /// Counts one observation.
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKETS_US.partition_point(|&b| b < us);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// Writes the family, with cumulative buckets, in seconds.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        family(out, name, "histogram", help);
        let mut cumulative = 0;
        for (i, b) in BUCKETS_US.iter().enumerate() {
            cumulative += self.counts[i].load(Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {cumulative}",
                *b as f64 / 1e6
            );
        }
        cumulative += self.counts[BUCKETS_US.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// Writes a histogram family of counts (not durations) whose buckets were counted elsewhere:
/// `counts[i]` observations of at most `bounds[i]` (and more than `bounds[i - 1]`), and one
/// more count than bounds, for the observations above the last; `sum` is their total.
pub fn count_histogram(
    out: &mut String,
    name: &str,
    help: &str,
    bounds: &[u64],
    counts: &[u64],
    sum: u64,
) {
    debug_assert_eq!(
        counts.len(),
        bounds.len() + 1,
        "{name}: one count per bucket"
    );
    family(out, name, "histogram", help);
    let mut cumulative = 0;
    for (bound, count) in bounds.iter().zip(counts) {
        cumulative += count;
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    cumulative += counts.get(bounds.len()).copied().unwrap_or(0);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {cumulative}");
}

/// Writes a family's `# HELP` and `# TYPE` lines.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes a counter family that has one sample.
pub fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    single(out, name, "counter", help, value);
}

/// Writes a gauge family that has one sample.
pub fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    single(out, name, "gauge", help, value);
}

fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    label! {
        /// A test label.
        enum Colour {
            Red = "red",
            Blue = "blue",
        }
    }

    label! {
        /// Another.
        enum Size {
            Small = "s",
            Large = "l",
            Huge = "xl",
        }
    }

    #[test]
    fn counters_render_every_value_in_list_order() {
        let c = Counter::<Colour>::default();
        c.inc(Colour::Blue);
        c.add(Colour::Blue, 2);
        assert_eq!((c.get(Colour::Red), c.get(Colour::Blue)), (0, 3));
        let mut out = String::new();
        c.render(&mut out, "x_total", "Xs.", &["colour"]);
        assert_eq!(
            out,
            "# HELP x_total Xs.\n# TYPE x_total counter\n\
             x_total{colour=\"red\"} 0\nx_total{colour=\"blue\"} 3\n"
        );
    }

    #[test]
    fn pairs_index_every_combination_once() {
        let c = Counter::<(Colour, Size)>::default();
        for i in 0..<(Colour, Size)>::COUNT {
            let l = <(Colour, Size)>::at(i);
            assert_eq!(l.index(), i);
            c.add(l, i as u64);
        }
        assert_eq!(c.get((Colour::Blue, Size::Huge)), 5);
        let mut out = String::new();
        c.samples(&mut out, "y", &["colour", "size"]);
        assert_eq!(out.lines().count(), 6);
        assert!(
            out.starts_with("y{colour=\"red\",size=\"s\"} 0\ny{colour=\"red\",size=\"l\"} 1\n")
        );
    }
}
