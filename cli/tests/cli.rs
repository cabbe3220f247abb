//! The `quicrpc` binary against a real test server (the Echo service, with reflection and
//! health, over QUIC and TCP): every subcommand, the error cases and the exit codes.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt as _};
use prost::Message as _;
use prost_types::{
    DescriptorProto, FileDescriptorProto, MethodDescriptorProto, ServiceDescriptorProto,
};
use quicrpc_tests::{TestOptions, TestServer};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::server_reflection_server::{
    ServerReflection, ServerReflectionServer,
};
use tonic_reflection::pb::v1::{
    ErrorResponse, FileDescriptorResponse, ListServiceResponse, ServerReflectionRequest,
    ServerReflectionResponse, ServiceResponse,
};

/// Bound on one run of the binary.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The standard output's lines as JSON values.
    fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).expect("each output line is JSON"))
            .collect()
    }

    #[track_caller]
    fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "exit code; the run: {self:#?}");
        self
    }

    #[track_caller]
    fn stderr_has(&self, text: &str) -> &Self {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}: {self:#?}"
        );
        self
    }

    #[track_caller]
    fn stdout_has(&self, text: &str) -> &Self {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}: {self:#?}"
        );
        self
    }
}

/// Starts `quicrpc ARGS` with piped standard input, output and error; killed if dropped.
fn spawn_quicrpc(args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_quicrpc"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start quicrpc")
}

/// Runs `quicrpc ARGS` with an empty standard input, bounded by [`RUN_LIMIT`].
async fn quicrpc(args: &[&str]) -> Run {
    let mut child = spawn_quicrpc(args);
    drop(child.stdin.take());
    let output = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("quicrpc {args:?} ran past {RUN_LIMIT:?}"))
        .expect("quicrpc ran");
    Run {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("quicrpc-cli-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write temp file");
        path.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test server, its address, and its CA in a PEM file.
struct Fixture {
    /// Kept to keep the server serving.
    _server: TestServer,
    addr: String,
    ca: String,
    _dir: TempDir,
}

impl Fixture {
    async fn start() -> Self {
        let server = TestServer::start().await;
        let dir = TempDir::new();
        let ca = dir.file("ca.pem", server.cert.ca_pem());
        Self {
            addr: format!("localhost:{}", server.addr.port()),
            _server: server,
            ca,
            _dir: dir,
        }
    }

    /// `quicrpc SUBCOMMAND ADDR --ca CA REST...`.
    async fn run(&self, subcommand: &str, rest: &[&str]) -> Run {
        let mut args = vec![subcommand, self.addr.as_str(), "--ca", self.ca.as_str()];
        args.extend_from_slice(rest);
        quicrpc(&args).await
    }

    async fn call(&self, rest: &[&str]) -> Run {
        self.run("call", rest).await
    }
}

fn proto_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto")
}

const UNARY: &str = "quicrpc.testing.Echo/Unary";

#[tokio::test(flavor = "multi_thread")]
async fn unary_call_prints_json_and_ok_on_every_transport() {
    let f = Fixture::start().await;
    for (transport, name) in [
        ("auto", "QUIC"),
        ("quic", "QUIC"),
        ("h3", "HTTP/3"),
        ("tcp", "TCP"),
    ] {
        let run = f
            .call(&[
                UNARY,
                "-d",
                r#"{"message": "hi"}"#,
                "--transport",
                transport,
                "-v",
            ])
            .await;
        run.expect_code(0)
            .stderr_has("status: OK (0)")
            .stderr_has(&format!("transport: {name}"));
        assert_eq!(run.json_lines()[0]["message"], "hi", "{run:#?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn server_streaming_prints_one_line_per_message() {
    let f = Fixture::start().await;
    let run = f
        .call(&[
            "quicrpc.testing.Echo/ServerStream",
            "-d",
            r#"{"message": "s", "response_count": 3}"#,
            "--emit-defaults",
        ])
        .await;
    run.expect_code(0);
    let indexes: Vec<u64> = run
        .json_lines()
        .iter()
        .map(|m| m["index"].as_u64().expect("index"))
        .collect();
    assert_eq!(indexes, [0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_streaming_reads_messages_from_a_file() {
    let f = Fixture::start().await;
    let dir = TempDir::new();
    let file = dir.file(
        "requests.jsonl",
        "{\"message\": \"a\"}\n{\"message\": \"b\"}\n\n{\"message\": \"c\"}\n",
    );
    let data = format!("@{file}");
    let run = f
        .call(&["quicrpc.testing.Echo/ClientStream", "-d", &data])
        .await;
    run.expect_code(0);
    let reply = &run.json_lines()[0];
    assert_eq!(
        (&reply["message"], &reply["index"]),
        (&"abc".into(), &3.into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bidi_streaming_reads_messages_from_a_file() {
    let f = Fixture::start().await;
    let dir = TempDir::new();
    let file = dir.file(
        "requests.jsonl",
        "{\"message\": \"x\"}\n{\"message\": \"y\"}\n",
    );
    let data = format!("@{file}");
    let run = f.call(&["quicrpc.testing.Echo/Bidi", "-d", &data]).await;
    run.expect_code(0);
    let messages: Vec<String> = run
        .json_lines()
        .iter()
        .map(|m| m["message"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(messages, ["x", "y"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bidi_streaming_from_stdin_is_interactive() {
    let f = Fixture::start().await;
    let mut child = spawn_quicrpc(&[
        "call",
        &f.addr,
        "--ca",
        &f.ca,
        "quicrpc.testing.Echo/Bidi",
        "-d",
        "@-",
    ]);
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // Each reply arrives while standard input is still open: the lines stream as they come.
    for word in ["x", "y"] {
        let line = format!("{{\"message\": \"{word}\"}}\n");
        stdin.write_all(line.as_bytes()).await.expect("write");
        let reply = tokio::time::timeout(RUN_LIMIT, stdout.next_line())
            .await
            .expect("a reply in time")
            .expect("read stdout")
            .expect("a reply line");
        let reply: serde_json::Value = serde_json::from_str(&reply).expect("JSON");
        assert_eq!(reply["message"], word);
    }
    // A line that is not a request message ends the call: exit 65, naming line and field.
    stdin.write_all(b"{\"message\": 7}\n").await.expect("write");
    let status = tokio::time::timeout(RUN_LIMIT, child.wait())
        .await
        .expect("exits in time")
        .expect("exit status");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .await
        .expect("read stderr");
    assert_eq!(status.code(), Some(65), "{stderr}");
    assert!(
        stderr.contains("line 3") && stderr.contains("field `message`"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proto_file_replaces_reflection() {
    let f = Fixture::start().await;
    let proto = proto_dir().join("testing/echo.proto");
    let include = proto_dir();
    let (proto, include) = (proto.to_str().unwrap(), include.to_str().unwrap());
    f.call(&[
        UNARY,
        "-d",
        r#"{"message": "p"}"#,
        "--proto",
        proto,
        "-I",
        include,
    ])
    .await
    .expect_code(0)
    .stdout_has(r#""message":"p""#);
    // list and describe need no server at all with --proto.
    let nowhere = ["--proto", proto, "-I", include];
    let run = quicrpc(&[&["list", "localhost:1"], &nowhere[..]].concat()).await;
    run.expect_code(0);
    assert_eq!(run.stdout.trim(), "quicrpc.testing.Echo");
    quicrpc(
        &[
            &["describe", "localhost:1", "quicrpc.testing.Echo"],
            &nowhere[..],
        ]
        .concat(),
    )
    .await
    .expect_code(0)
    .stdout_has("option (quicrpc.priority) = CRITICAL;");
    // With --proto, the method and the JSON are checked before connecting: no server
    // needed to hear about a mistake.
    quicrpc(
        &[
            &["call", "localhost:1", "quicrpc.testing.Echo/Nope"],
            &nowhere[..],
        ]
        .concat(),
    )
    .await
    .expect_code(67);
    let bad_json = ["call", "localhost:1", UNARY, "-d", r#"{"barrier": "yes"}"#];
    quicrpc(&[&bad_json[..], &nowhere[..]].concat())
        .await
        .expect_code(65)
        .stderr_has("field `barrier`");
    // A .proto that does not compile: exit 65, with protox's reason.
    let dir = TempDir::new();
    let broken = dir.file("broken.proto", "syntax = \"proto3\";\nmessage {");
    quicrpc(&["list", "localhost:1", "--proto", &broken])
        .await
        .expect_code(65)
        .stderr_has("compiling --proto");
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_timeout_and_priority_reach_the_server() {
    let f = Fixture::start().await;
    let run = f
        .call(&[
            UNARY,
            "-H",
            "x-echo-color: blue",
            "-H",
            "x-echo-bin: AAEC",
            "--timeout",
            "5s",
            "--priority",
            "critical",
            "-v",
        ])
        .await;
    run.expect_code(0)
        .stderr_has("header: x-echo-color: blue")
        .stderr_has("header: x-echo-bin: AAEC");
    let reply = &run.json_lines()[0];
    assert_eq!(reply["priority"], "critical", "{reply}");
    let timeout_ms: u64 = reply["timeoutMs"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("timeoutMs as a string (proto3 JSON for uint64)");
    assert!((4000..=5000).contains(&timeout_ms), "{timeout_ms}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_exit_code_is_the_status_code() {
    let f = Fixture::start().await;
    for (code, name) in [
        (5, "NOT_FOUND"),
        (3, "INVALID_ARGUMENT"),
        (14, "UNAVAILABLE"),
    ] {
        let data = format!(r#"{{"fail_code": {code}, "fail_message": "told to fail"}}"#);
        f.call(&[UNARY, "-d", &data])
            .await
            .expect_code(code)
            .stderr_has(&format!("status: {name} ({code}): told to fail"));
    }
    // A deadline that passes: DEADLINE_EXCEEDED, 4.
    let started = Instant::now();
    f.call(&["quicrpc.testing.Echo/Hang", "--timeout", "200ms"])
        .await
        .expect_code(4)
        .stderr_has("DEADLINE_EXCEEDED (4)");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread")]
async fn list_shows_services_and_methods() {
    let f = Fixture::start().await;
    let run = f.run("list", &[]).await;
    run.expect_code(0);
    let services: Vec<&str> = run.stdout.lines().collect();
    for service in [
        "grpc.reflection.v1.ServerReflection",
        "quicrpc.testing.Echo",
    ] {
        assert!(services.contains(&service), "{services:?}");
    }
    let run = f.run("list", &["quicrpc.testing.Echo"]).await;
    run.expect_code(0).stdout_has("quicrpc.testing.Echo/Bidi\n");
    assert_eq!(run.stdout.lines().count(), 8, "{run:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn describe_prints_proto_syntax() {
    let f = Fixture::start().await;
    f.run("describe", &["quicrpc.testing.Echo"])
        .await
        .expect_code(0)
        .stdout_has("service quicrpc.testing.Echo {\n")
        .stdout_has(
            "  rpc ServerStream(quicrpc.testing.EchoRequest) returns (stream quicrpc.testing.EchoReply);\n",
        )
        .stdout_has("    option (quicrpc.priority) = CRITICAL;\n")
        .stdout_has("    option idempotency_level = NO_SIDE_EFFECTS;\n");
    f.run("describe", &["quicrpc.testing.EchoRequest"])
        .await
        .expect_code(0)
        .stdout_has("message quicrpc.testing.EchoRequest {\n")
        .stdout_has("  uint32 response_size = 3;\n");
    f.run("describe", &["quicrpc.testing.Echo/Bidi"])
        .await
        .expect_code(0)
        .stdout_has(
            "rpc Bidi(stream quicrpc.testing.EchoRequest) returns (stream quicrpc.testing.EchoReply);\n",
        )
        .stdout_has("message quicrpc.testing.EchoRequest {");
    f.run("describe", &["quicrpc.testing.Nothing"])
        .await
        .expect_code(67)
        .stderr_has("unknown symbol `quicrpc.testing.Nothing`");
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_reports_rate_latency_and_statuses() {
    let f = Fixture::start().await;
    let run = f
        .run(
            "bench",
            &[
                UNARY,
                "-d",
                r#"{"message": "b"}"#,
                "-c",
                "4",
                "-z",
                "1s",
                "--connections",
                "2",
            ],
        )
        .await;
    run.expect_code(0)
        .stdout_has("4 calls in flight (closed loop) on 2 connections")
        .stdout_has("calls/s")
        .stdout_has("p99.9")
        .stdout_has("OK (0)");
    // Open loop at 100 calls/s for 1 s: about 100 calls.
    let run = f
        .run(
            "bench",
            &[UNARY, "--rate", "100", "-z", "1s", "--transport", "tcp"],
        )
        .await;
    run.expect_code(0).stdout_has("over TCP");
    let calls: u64 = run
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("calls:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a calls line");
    assert!((90..=101).contains(&calls), "{calls} calls: {run:#?}");
    // Failing calls land in the status histogram.
    f.run(
        "bench",
        &[UNARY, "-d", r#"{"fail_code": 5}"#, "-c", "2", "-z", "200ms"],
    )
    .await
    .expect_code(0)
    .stdout_has("NOT_FOUND (5)");
}

#[tokio::test(flavor = "multi_thread")]
async fn certs_written_by_the_tool_serve_and_verify() {
    let dir = TempDir::new();
    let out = dir.0.join("certs");
    let out = out.to_str().expect("utf-8 path");
    quicrpc(&["certs", "--out", out, "--name", "localhost"])
        .await
        .expect_code(0)
        .stdout_has("ca.pem")
        .stdout_has("Identity::from_pem");
    // Not overwritten without --force.
    quicrpc(&["certs", "--out", out])
        .await
        .expect_code(73)
        .stderr_has("--force");
    let read = |name: &str| std::fs::read(Path::new(out).join(name)).expect("written");
    let identity =
        quicrpc::tls::Identity::from_pem(read("cert.pem"), read("key.pem")).expect("identity");
    let server = TestServer::start_with(Default::default(), |b| b.identity(identity)).await;
    let addr = format!("localhost:{}", server.addr.port());
    let ca = format!("{out}/ca.pem");
    for transport in ["quic", "tcp"] {
        quicrpc(&["call", &addr, UNARY, "--ca", &ca, "--transport", transport])
            .await
            .expect_code(0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_failures_say_what_to_do() {
    let f = Fixture::start().await;
    // Without the CA (the Mozilla roots do not know it): UNAVAILABLE, and a hint.
    for transport in ["auto", "quic", "tcp"] {
        quicrpc(&["call", &f.addr, UNARY, "--transport", transport])
            .await
            .expect_code(14)
            .stderr_has("certificate")
            .stderr_has("--ca FILE")
            .stderr_has("--insecure-skip-verify");
    }
    // Explicitly unverified: works on both transports, loudly.
    for (transport, name) in [("quic", "QUIC"), ("tcp", "TCP")] {
        let args = [
            "call",
            &f.addr,
            UNARY,
            "--insecure-skip-verify",
            "--transport",
            transport,
            "-v",
        ];
        quicrpc(&args)
            .await
            .expect_code(0)
            .stderr_has("NOT verified")
            .stderr_has(&format!("transport: {name}"));
    }
    // A file that is not PEM.
    let dir = TempDir::new();
    let junk = dir.file("junk.pem", "not a certificate");
    quicrpc(&["call", &f.addr, UNARY, "--ca", &junk])
        .await
        .expect_code(65);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_fails_within_the_connect_timeout() {
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let started = Instant::now();
    quicrpc(&["call", &addr, UNARY, "--connect-timeout", "1s"])
        .await
        .expect_code(14)
        .stderr_has("cannot connect to")
        .stderr_has("is a quicrpc or gRPC server listening");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn local_mistakes_have_their_own_exit_codes() {
    let f = Fixture::start().await;
    // Bad addresses and arguments: 64.
    for args in [
        &["call", "localhost", UNARY][..],
        &["call", "http://localhost:1", UNARY],
        &["call", "local host:1", UNARY],
        &["call", &f.addr, UNARY, "-H", "no colon"],
        &["call", &f.addr, UNARY, "--timeout", "soon"],
        &["call", &f.addr, UNARY, "--priority", "urgent"],
        &["call", &f.addr, "NoSlash"],
        &["bench", &f.addr, UNARY, "--rate", "0"],
        &["call", "--no-such-flag"],
    ] {
        let run = quicrpc(args).await;
        run.expect_code(64);
        assert!(!run.stderr.contains("panicked"), "{run:#?}");
    }
    // Unknown service or method: 67, with the close names.
    f.call(&["quicrpc.testing.Ecko/Unary"])
        .await
        .expect_code(67)
        .stderr_has("unknown service `quicrpc.testing.Ecko`; did you mean `quicrpc.testing.Echo`?");
    f.call(&["quicrpc.testing.Echo/Unray"])
        .await
        .expect_code(67)
        .stderr_has("has no method `Unray`; did you mean `Unary`?");
    // JSON that does not fit the message: 65, naming the field.
    f.call(&[UNARY, "-d", r#"{"response_size": "lots"}"#])
        .await
        .expect_code(65)
        .stderr_has("field `response_size`");
    f.call(&[UNARY, "-d", r#"{"colour": 1}"#])
        .await
        .expect_code(65)
        .stderr_has("colour");
    f.call(&[UNARY, "-d", "{not json"])
        .await
        .expect_code(65)
        .stderr_has("not valid JSON");
    f.call(&[UNARY, "-d", "{} {}"])
        .await
        .expect_code(65)
        .stderr_has("exactly one request message");
    // A file that is not there: 66.
    f.call(&[UNARY, "-d", "@/nonexistent/requests.json"])
        .await
        .expect_code(66);
    // --help is not an error.
    quicrpc(&["call", "--help"])
        .await
        .expect_code(0)
        .stdout_has("Examples:");
    quicrpc(&["--help"])
        .await
        .expect_code(0)
        .stdout_has("0-RTT");
}

/// Durations and rates the clock cannot hold are refused as the arguments are read: exit 64
/// with the reason and the bound, never a panic from a `Duration` or `Instant` that overflows
/// once connected. The server is real, so a value that slipped through would reach the code
/// that overflows.
#[tokio::test(flavor = "multi_thread")]
async fn extreme_durations_and_rates_are_usage_errors() {
    let f = Fixture::start().await;
    // Seconds: fits a `Duration`, not an `Instant` or twice itself.
    const HUGE: &str = "10000000000000000000";
    for (subcommand, rest, reason) in [
        ("call", &[UNARY, "--connect-timeout", HUGE][..], "8760h"),
        ("list", &["--connect-timeout", HUGE], "8760h"),
        // Past gRPC's longest grpc-timeout (99999999 hours).
        ("call", &[UNARY, "--timeout", "100000000h"], "8760h"),
        ("call", &[UNARY, "--timeout", "8761h"], "8760h"),
        ("bench", &[UNARY, "-z", HUGE], "8760h"),
        ("bench", &[UNARY, "--timeout", HUGE], "8760h"),
        (
            "bench",
            &[UNARY, "--rate", "1e-300"],
            "one call in 365 days",
        ),
        ("bench", &[UNARY, "--rate", "NaN"], "positive number"),
        ("bench", &[UNARY, "--rate", "inf"], "positive number"),
        ("bench", &[UNARY, "--rate=-5"], "positive number"),
    ] {
        let run = f.run(subcommand, rest).await;
        assert!(!run.stderr.contains("panicked"), "{run:#?}");
        run.expect_code(64).stderr_has(reason);
    }
    // The bound itself is accepted: a deadline a year away still lets the call finish.
    f.call(&[UNARY, "--timeout", "8760h", "--connect-timeout", "8760h"])
        .await
        .expect_code(0);
}

/// An open-loop rate far beyond what the server can answer (here every call is due at once)
/// still ends the test after -z: sending stops at the end however far behind the calls are.
#[tokio::test(flavor = "multi_thread")]
async fn bench_with_an_impossible_rate_stops_after_its_duration() {
    let f = Fixture::start().await;
    let started = Instant::now();
    f.run(
        "bench",
        &[UNARY, "--rate", "1e300", "-z", "500ms", "-c", "2"],
    )
    .await
    .expect_code(0)
    .stdout_has("calls/s offered (open loop, at most 2 in flight)")
    .stdout_has("OK (0)");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// Asserts that `text` (a run's standard output or error) holds nothing a terminal would act
/// on: no ESC, BEL, carriage return or C1 control such as CSI (U+009B).
#[track_caller]
fn assert_no_terminal_controls(text: &str, run: &Run) {
    let found: Vec<char> = text
        .chars()
        .filter(|&c| c.is_control() && c != '\n')
        .collect();
    assert!(
        found.is_empty(),
        "raw control characters {found:?}: {run:#?}"
    );
}

/// What a hostile server puts in its free text: a colour, a window title (ending in BEL), a
/// carriage return and a line that looks like the tool's own.
const HOSTILE_TEXT: &str = "\x1b[31mred\x1b]0;pwned\x07\r\nstatus: OK (0)";

/// A server's status message and metadata reach the terminal with their control characters
/// escaped (`\u{1b}`), on standard error (`call`, `-v`) and in `bench`'s summary on standard
/// output, over both transports; the JSON of response messages is serde_json's business.
#[tokio::test(flavor = "multi_thread")]
async fn control_characters_from_the_server_are_escaped() {
    /// Refuses every Echo call with [`HOSTILE_TEXT`], and a trailer holding a C1 control
    /// (CSI, U+009B, as UTF-8: http allows such bytes in a header value).
    fn refuse(_: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let mut metadata = tonic::metadata::MetadataMap::new();
        let value = tonic::metadata::MetadataValue::try_from(&b"\xc2\x9b2Jcleared"[..])
            .expect("obs-text is a valid header value");
        metadata.insert("x-hostile", value);
        Err(tonic::Status::with_metadata(
            tonic::Code::PermissionDenied,
            HOSTILE_TEXT,
            metadata,
        ))
    }
    let server = TestServer::start_with(
        TestOptions {
            interceptor: Some(refuse),
            ..Default::default()
        },
        |b| b,
    )
    .await;
    let dir = TempDir::new();
    let ca = dir.file("ca.pem", server.cert.ca_pem());
    let addr = format!("localhost:{}", server.addr.port());
    for transport in ["quic", "tcp"] {
        let run = quicrpc(&[
            "call",
            &addr,
            UNARY,
            "--ca",
            &ca,
            "--transport",
            transport,
            "-v",
        ])
        .await;
        run.expect_code(7)
            .stderr_has(
                "status: PERMISSION_DENIED (7): \\u{1b}[31mred\\u{1b}]0;pwned\\u{7}\\u{d}\\u{a}status: OK (0)",
            )
            .stderr_has("trailer: x-hostile: \\u{9b}2Jcleared");
        assert_no_terminal_controls(&run.stderr, &run);
        let status_lines = run.stderr.lines().filter(|l| l.starts_with("status:"));
        assert_eq!(status_lines.count(), 1, "a forged status line: {run:#?}");

        let run = quicrpc(&[
            "bench",
            &addr,
            UNARY,
            "--ca",
            &ca,
            "--transport",
            transport,
            "-c",
            "1",
            "-z",
            "100ms",
        ])
        .await;
        run.expect_code(0)
            .stdout_has("PERMISSION_DENIED (7)")
            .stdout_has("first: \\u{1b}[31mred");
        assert_no_terminal_controls(&run.stdout, &run);
    }
}

/// A reflection service that lies: it lists service names with terminal escapes in them,
/// answers any `evil.` symbol with a file that imports `dep.proto`, and answers a request
/// for a file by name with a file of another name. An `ok.` symbol is in a file that
/// resolves, with terminal escapes in a message's name. A `chain.` symbol is in
/// `chain-0.proto`, and each `chain-N.proto` it serves imports `chain-N+1.proto`, without
/// end. Other symbols are NOT_FOUND, except `denied.` ones: PERMISSION_DENIED with
/// [`HOSTILE_TEXT`].
#[derive(Debug)]
struct LyingReflection;

#[tonic::async_trait]
impl ServerReflection for LyingReflection {
    type ServerReflectionInfoStream =
        Pin<Box<dyn Stream<Item = Result<ServerReflectionResponse, tonic::Status>> + Send>>;

    async fn server_reflection_info(
        &self,
        request: tonic::Request<tonic::Streaming<ServerReflectionRequest>>,
    ) -> Result<tonic::Response<Self::ServerReflectionInfoStream>, tonic::Status> {
        // A request about `silent.` gets no answer, and the stream stays open.
        let answers = request
            .into_inner()
            .filter(|r| {
                let silent = matches!(
                    r.as_ref().map(|r| &r.message_request),
                    Ok(Some(MessageRequest::FileContainingSymbol(symbol)))
                        if symbol.starts_with("silent.")
                );
                std::future::ready(!silent)
            })
            .map(|r| r.map(lie))
            .chain(futures_util::stream::pending());
        Ok(tonic::Response::new(Box::pin(answers)))
    }
}

/// [`LyingReflection`]'s answer to one request.
fn lie(request: ServerReflectionRequest) -> ServerReflectionResponse {
    let files = |files: Vec<FileDescriptorProto>| {
        MessageResponse::FileDescriptorResponse(FileDescriptorResponse {
            file_descriptor_proto: files.iter().map(|f| f.encode_to_vec()).collect(),
        })
    };
    let error = |code: tonic::Code, message: &str| {
        MessageResponse::ErrorResponse(ErrorResponse {
            error_code: code as i32,
            error_message: message.to_owned(),
        })
    };
    let answer = match &request.message_request {
        Some(MessageRequest::ListServices(_)) => {
            MessageResponse::ListServicesResponse(ListServiceResponse {
                service: ["evil.Svc", "evil.\x1b[31mRed\x1b]0;pwned\x07"]
                    .into_iter()
                    .map(|name| ServiceResponse { name: name.into() })
                    .collect(),
            })
        }
        Some(MessageRequest::FileContainingSymbol(symbol)) if symbol.starts_with("evil.") => {
            files(vec![service_file("evil", "M", &["dep.proto"])])
        }
        Some(MessageRequest::FileContainingSymbol(symbol)) if symbol.starts_with("ok.") => {
            files(vec![service_file("ok", "\x1b[31mM\x1b]0;pwned\x07", &[])])
        }
        Some(MessageRequest::FileContainingSymbol(symbol)) if symbol.starts_with("chain.") => {
            files(vec![chain_file(0)])
        }
        Some(MessageRequest::FileByFilename(name)) if name.starts_with("chain-") => {
            let n = name
                .trim_start_matches("chain-")
                .trim_end_matches(".proto")
                .parse()
                .expect("a chain file's number");
            files(vec![chain_file(n)])
        }
        Some(MessageRequest::FileContainingSymbol(symbol)) if symbol.starts_with("denied.") => {
            error(tonic::Code::PermissionDenied, HOSTILE_TEXT)
        }
        Some(MessageRequest::FileByFilename(name)) => files(vec![FileDescriptorProto {
            name: Some(format!("\x1b[2Jnot-{name}")),
            package: Some("dep".into()),
            syntax: Some("proto3".into()),
            ..Default::default()
        }]),
        _ => error(tonic::Code::NotFound, "no \x1b[5msuch\x1b[0m thing"),
    };
    ServerReflectionResponse {
        valid_host: String::new(),
        original_request: Some(request),
        message_response: Some(answer),
    }
}

/// `PACKAGE.proto`: `service PACKAGE.Svc { rpc Call(PACKAGE.MESSAGE) returns
/// (PACKAGE.MESSAGE); }`, importing `imports`.
fn service_file(package: &str, message: &str, imports: &[&str]) -> FileDescriptorProto {
    let message_type = format!(".{package}.{message}");
    FileDescriptorProto {
        name: Some(format!("{package}.proto")),
        package: Some(package.into()),
        dependency: imports.iter().map(|i| (*i).to_owned()).collect(),
        message_type: vec![DescriptorProto {
            name: Some(message.into()),
            ..Default::default()
        }],
        service: vec![ServiceDescriptorProto {
            name: Some("Svc".into()),
            method: vec![MethodDescriptorProto {
                name: Some("Call".into()),
                input_type: Some(message_type.clone()),
                output_type: Some(message_type),
                ..Default::default()
            }],
            ..Default::default()
        }],
        syntax: Some("proto3".into()),
        ..Default::default()
    }
}

/// `chain-N.proto`, importing `chain-N+1.proto`.
fn chain_file(n: u64) -> FileDescriptorProto {
    FileDescriptorProto {
        name: Some(format!("chain-{n}.proto")),
        package: Some("chain".into()),
        dependency: vec![format!("chain-{}.proto", n + 1)],
        syntax: Some("proto3".into()),
        ..Default::default()
    }
}

/// A server that offers only [`LyingReflection`], on both transports; stopped when dropped.
struct LyingServer {
    addr: String,
    ca: String,
    _dir: TempDir,
    serving: tokio::task::JoinHandle<Result<(), quicrpc::Error>>,
}

impl LyingServer {
    async fn start() -> Self {
        let cert = quicrpc::tls::SelfSigned::new(["localhost"]).expect("certificate");
        let server = quicrpc::Server::builder()
            .identity(cert.identity())
            .add_service(ServerReflectionServer::new(LyingReflection))
            .bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = format!("localhost:{}", server.local_addr().port());
        let dir = TempDir::new();
        let ca = dir.file("ca.pem", cert.ca_pem());
        Self {
            addr,
            ca,
            _dir: dir,
            serving: tokio::spawn(server.serve()),
        }
    }

    /// `quicrpc SUBCOMMAND ADDR --ca CA REST...`.
    async fn run(&self, subcommand: &str, rest: &[&str]) -> Run {
        let mut args = vec![subcommand, self.addr.as_str(), "--ca", self.ca.as_str()];
        args.extend_from_slice(rest);
        quicrpc(&args).await
    }
}

impl Drop for LyingServer {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

/// A reflection service that answers a request for one file with another fails the run
/// (exit 65, naming both files) rather than being asked again forever, and so does one
/// whose imports never end, once it has sent a thousand files; nothing it names reaches
/// the terminal unescaped.
#[tokio::test(flavor = "multi_thread")]
async fn a_lying_reflection_service_ends_the_run() {
    let server = LyingServer::start().await;
    for (subcommand, rest) in [
        ("describe", &["evil.Svc"][..]),
        ("call", &["evil.Svc/Call"]),
        ("list", &["evil.Svc"]),
    ] {
        let run = server.run(subcommand, rest).await;
        run.expect_code(65)
            .stderr_has("asked for dep.proto")
            .stderr_has("\\u{1b}[2Jnot-dep.proto");
        assert_no_terminal_controls(&run.stderr, &run);
    }
    let run = server.run("describe", &["chain.Thing"]).await;
    run.expect_code(65)
        .stderr_has("sent more than 1000 file descriptors");
    // Its descriptors' names.
    let run = server.run("describe", &["ok.Svc"]).await;
    run.expect_code(0)
        .stdout_has("rpc Call(ok.\\u{1b}[31mM\\u{1b}]0;pwned\\u{7}) returns");
    assert_no_terminal_controls(&run.stdout, &run);
    // Its service names, listed and suggested.
    let run = server.run("list", &[]).await;
    run.expect_code(0)
        .stdout_has("evil.\\u{1b}[31mRed\\u{1b}]0;pwned\\u{7}\n");
    assert_no_terminal_controls(&run.stdout, &run);
    let run = server.run("describe", &["nope.Thing"]).await;
    run.expect_code(67)
        .stderr_has("unknown symbol `nope.Thing`")
        .stderr_has("evil.\\u{1b}[31mRed");
    assert_no_terminal_controls(&run.stderr, &run);
    // A request it never answers: the run ends once the connect timeout has passed.
    let run = server
        .run("describe", &["silent.Thing", "--connect-timeout", "300ms"])
        .await;
    run.expect_code(4).stderr_has("did not answer within 300ms");
    // Its error messages.
    let run = server.run("describe", &["denied.Thing"]).await;
    run.expect_code(13).stderr_has("\\u{1b}[31mred");
    assert_no_terminal_controls(&run.stderr, &run);
}

/// `certs --force` writes the key readable by its owner only whatever mode the old file had,
/// and never writes through a link at one of its paths: without `--force` a link (even a
/// dangling one) counts as an existing file, and with it the link is replaced, not followed.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn certs_force_sets_the_key_s_mode_and_does_not_follow_links() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = TempDir::new();
    let out = dir.0.join("certs");
    std::fs::create_dir_all(&out).expect("dir");
    let key = out.join("key.pem");
    std::fs::write(&key, "old").expect("old key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out_str = out.to_str().expect("utf-8 path");
    quicrpc(&["certs", "--out", out_str, "--force"])
        .await
        .expect_code(0);
    let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key mode {mode:o}");

    // A dangling link where the key goes.
    let elsewhere = dir.0.join("elsewhere.pem");
    std::fs::remove_file(&key).expect("remove");
    std::os::unix::fs::symlink(&elsewhere, &key).expect("symlink");
    quicrpc(&["certs", "--out", out_str])
        .await
        .expect_code(73)
        .stderr_has("--force");
    quicrpc(&["certs", "--out", out_str, "--force"])
        .await
        .expect_code(0);
    assert!(!elsewhere.exists(), "the key was written through the link");
    let meta = std::fs::symlink_metadata(&key).expect("key");
    assert!(meta.file_type().is_file(), "the link was not replaced");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

/// `--proto` names are looked up under each `--import-path`, as protoc and grpcurl do, then
/// from the working directory; a name found nowhere says where it was looked for.
#[tokio::test(flavor = "multi_thread")]
async fn proto_names_resolve_against_the_import_paths() {
    let include = proto_dir();
    let include = include.to_str().expect("utf-8 path");
    let run = quicrpc(&[
        "list",
        "localhost:1",
        "--proto",
        "testing/echo.proto",
        "--import-path",
        include,
    ])
    .await;
    run.expect_code(0);
    assert_eq!(run.stdout.trim(), "quicrpc.testing.Echo");
    quicrpc(&[
        "list",
        "localhost:1",
        "--proto",
        "testing/nope.proto",
        "--import-path",
        include,
    ])
    .await
    .expect_code(66)
    .stderr_has("under --import-path");
}
