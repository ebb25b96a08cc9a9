//! Runnable examples of visit-journal; see the `[[example]]` entries.
