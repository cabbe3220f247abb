//! The Node.js binding (`bindings/node/`, quicrpc's client as a napi-rs addon) against the
//! Echo test server: runs the binding's own tests with Node's test runner (`node --test`),
//! each test file starting the `echo-server` program built with this crate.
//!
//! A second test runs `bindings/node/netns/` against the server in a network namespace
//! whose UDP is dropped (root, iproute2 and nftables, as `tests/tests/netns.rs`).
//!
//! It needs node (20 or later) and the addon built: `npm ci && npm run build` in
//! `bindings/node` (`.ci/run` does both). It fails loudly without them, and when the addon
//! is older than the Rust code it is built from.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use quicrpc_tests::TestServer;
use quicrpc_tests::netns::NetNs;

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

/// Runs `node --test DIR` in the binding's directory with `env`, and returns its output once
/// every test in it passed (and at least `at_least` ran).
async fn node_tests(dir_arg: &str, env: &[(&str, &str)], at_least: usize) -> String {
    let dir = binding_dir();
    built_addon(&dir);
    let mut command = tokio::process::Command::new("node");
    command
        .arg("--test")
        .arg(dir_arg)
        .current_dir(&dir)
        .env("QUICRPC_ECHO_SERVER", env!("CARGO_BIN_EXE_echo-server"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("THIS TEST DID NOT RUN: cannot start node ({e})"));
    let output = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("node --test did not finish within {RUN_LIMIT:?}"))
        .expect("node --test");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
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
    assert!(count("pass") >= at_least, "too few Node.js tests ran");
    stdout
}

#[tokio::test]
async fn node_binding_tests_pass_against_the_echo_server() {
    node_tests("test/", &[], 20).await;
}

/// The Node.js client with `fallback: 'auto'` reaches a server whose UDP is dropped (in a
/// network namespace, behind nftables) over TCP: `bindings/node/netns/`. Needs root.
#[tokio::test]
async fn node_client_falls_back_to_tcp_where_udp_is_dropped() {
    let ns = NetNs::create();
    ns.block_udp();
    let ip = ns.ns_ip;
    let server = TestServer::start_in(&ns).await;
    let uri = format!("https://{ip}:{}", server.addr.port());
    let env = [
        ("QUICRPC_NETNS_URI", uri.as_str()),
        ("QUICRPC_NETNS_CA", server.cert.ca_pem()),
    ];
    node_tests("netns/", &env, 2).await;
    // The server ran the Node client's calls (its log has these two methods, not Bidi).
    let methods: Vec<String> = server.runs().into_iter().map(|run| run.method).collect();
    assert_eq!(methods, ["Unary", "ServerStream"]);
}
