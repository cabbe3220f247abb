//! Examples live in `helloworld.rs` and `agents/`; see the README.
