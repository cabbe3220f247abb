//! The minimum Rust version the README states is the workspace's `rust-version`. (The README's
//! Rust code blocks are this crate's doc tests: see `src/lib.rs`.)

#[test]
fn readme_states_the_workspace_rust_version() {
    let readme = include_str!("../../README.md");
    let prefix = "Minimum supported Rust version: ";
    let stated = readme
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("README.md has no line starting with {prefix:?}"));
    // This crate inherits rust-version from [workspace.package] in the root Cargo.toml.
    let rust_version = env!("CARGO_PKG_RUST_VERSION");
    assert_eq!(
        stated, rust_version,
        "README.md states {stated}, the workspace's rust-version is {rust_version}: \
         Cargo.toml is the source of truth, change README.md"
    );
}
