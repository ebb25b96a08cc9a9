//! Integration tests of the real `visit-server` binary on loopback ports.
//!
//! One test binary (one link); each module is a scenario family. See `support` for the
//! harness: every server is a child process killed on drop, every wait is bounded.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with a backtrace; clippy.toml allows unwrap only inside #[test] functions"
)]
#![allow(
    clippy::print_stderr,
    reason = "a helper says which fault injection a test fell back to; clippy.toml allows printing only inside #[test] functions"
)]

mod support;

mod anonymize;
mod cli;
mod cluster;
mod crash;
mod dashboard;
mod disk_full;
mod exact;
mod exports;
mod foreign;
mod hostile;
mod lifetime;
mod load;
mod read_token;
mod replicas;
mod serve;
mod shutdown;
mod torn;
