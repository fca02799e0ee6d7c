//! Warren's Rust client side, on lapin. Filled by the client issue; nothing here yet.
