//! Placeholder until the server lands (issue 4).
fn main() {}
