//! Not yet landed.
fn main() {}
