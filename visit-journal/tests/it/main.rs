//! visit-journal's integration tests: one binary, one module per concern.
//!
//! Some tests re-execute this binary as a child process (`crash`, `concurrency`): the child
//! entry points are ordinary `#[test]`s that do nothing unless an environment variable names
//! their work.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a test binary: a panic is a failed test, and children report on stdout"
)]

mod append;
mod concurrency;
mod crash;
mod damage;
mod faults;
mod props;
mod read;
mod repair;
mod rotation;
mod support;
