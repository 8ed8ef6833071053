//! Runnable examples (not yet landed).
