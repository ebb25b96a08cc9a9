//! Runs each example, as built by `cargo test`, and checks what it prints and how it exits.
//!
//! Cargo builds the examples (`target/debug/examples/NAME`) before it runs any test, unless
//! targets are filtered (`cargo test --test it`); `support::example` then says what to run.
#![allow(
    clippy::unwrap_used,
    reason = "a test binary: a panic is a failed test, with the example's output in it"
)]

mod support;

mod append_and_read;
mod crash_and_recover;
mod many_writers;
mod tiny_counter;
mod verify;
