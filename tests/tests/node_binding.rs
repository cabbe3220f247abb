//! The Node.js binding (`bindings/node/`, quicrpc's client as a napi-rs addon) against the
//! Echo test server: runs the binding's own tests with Node's test runner (`node --test`),
//! each test file starting the `echo-server` program built with this crate.
//!
//! It needs node (20 or later) and the addon built: `npm ci && npm run build` in
//! `bindings/node` (`.ci/run` does both). It fails loudly without them, and when the addon
//! is older than the Rust code it is built from.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

/// Bound on the whole `node --test` run (about 10 s on two cores in a debug build).
const RUN_LIMIT: Duration = Duration::from_secs(180);

fn binding_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../bindings/node")
}

/// The newest modification time of the files under `dir` (recursively).
fn newest(dir: &Path) -> SystemTime {
    let mut latest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).expect("read source dir").flatten() {
        let path = entry.path();
        let modified = match path.is_dir() {
            true => newest(&path),
            false => entry.metadata().and_then(|m| m.modified()).expect("mtime"),
        };
        latest = latest.max(modified);
    }
    latest
}

/// The addon `npm run build` made; panics with what to do if there is none, or if it is
/// older than the binding's or the schema crate's sources.
fn built_addon(dir: &Path) -> PathBuf {
    let setup = "build it with `npm ci && npm run build` in bindings/node (node 20 or later)";
    let addon = std::fs::read_dir(dir)
        .expect("bindings/node")
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "node"))
        .unwrap_or_else(|| panic!("THIS TEST DID NOT RUN: no addon in bindings/node: {setup}"));
    let built = addon
        .metadata()
        .and_then(|m| m.modified())
        .expect("addon mtime");
    let sources = newest(&dir.join("src")).max(newest(&dir.join("../../schema/src")));
    assert!(
        built >= sources,
        "THIS TEST DID NOT RUN: {} is older than its Rust sources: {setup}",
        addon.display()
    );
    addon
}

#[tokio::test]
async fn node_binding_tests_pass_against_the_echo_server() {
    let dir = binding_dir();
    built_addon(&dir);
    let child = tokio::process::Command::new("node")
        .arg("--test")
        .arg("test/")
        .current_dir(&dir)
        .env("QUICRPC_ECHO_SERVER", env!("CARGO_BIN_EXE_echo-server"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("THIS TEST DID NOT RUN: cannot start node ({e})"));
    let output = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("node --test did not finish within {RUN_LIMIT:?}"))
        .expect("node --test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the Node.js binding's tests failed ({}); their output is above",
        output.status
    );
    // The runner's summary: every test passed, and there were some.
    let count = |label: &str| -> usize {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(&format!("# {label} ")))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `# {label}` line in node's output"))
    };
    assert_eq!(count("fail"), 0);
    assert!(count("pass") >= 20, "too few Node.js tests ran");
}
