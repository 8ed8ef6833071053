//! Not yet landed: this crate is being written.
