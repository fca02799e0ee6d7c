//! Warren's Rust client side, on lapin: the `warren-cli` tool's commands live here as
//! library code (the binary only parses arguments and prints), starting with `perf`, the
//! load generator.

pub mod error;
pub mod histogram;
pub mod perf;

pub use error::{Error, DEFAULT_URL};
