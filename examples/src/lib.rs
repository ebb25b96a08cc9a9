//! Runnable examples of visit-journal: `cargo run --example NAME` from the repository root.
//!
//! The examples are `examples/NAME.rs`, listed in `examples/README.md`; `cargo test` builds
//! them and `tests/it` runs each one and checks what it prints. This library is empty.
