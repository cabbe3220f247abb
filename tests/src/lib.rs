//! Support for quicrpc's integration tests: the `Echo` test service, a server on a random
//! loopback port, bounded waits, test tracing and per-test metrics.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Barrier, Mutex, mpsc, oneshot};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

pub mod interop;
pub mod link;
pub mod local_metrics;
pub mod netns;
pub mod raw;
pub mod relay;
pub mod upload;

/// Generated code for `proto/testing/echo.proto`.
#[allow(missing_docs, unreachable_pub)]
pub mod pb {
    quicrpc::include_proto!("quicrpc.testing");

    /// The encoded `FileDescriptorSet` of `echo.proto` and its imports, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/echo_descriptor.bin"));
}

use pb::echo_client::EchoClient;
use pb::echo_server::{Echo, EchoServer};
use pb::{EchoReply, EchoRequest};

/// The bound on every wait in the tests. Nothing should take close to this; it exists so a
/// bug shows up as a failure rather than a hang.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Awaits `fut`, failing the test if it takes longer than [`TIMEOUT`].
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(TIMEOUT, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {TIMEOUT:?}: {what}"),
    }
}

/// Waits until `count()` is `n` (a server's connection count, say), polling; bounded by
/// [`TIMEOUT`].
pub async fn until(what: &str, count: impl Fn() -> usize, n: usize) {
    within(what, async {
        while count() != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Sends `tracing` output to the test harness (filtered by `RUST_LOG`).
pub fn trace_init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Something the test service reports about its handlers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `Hang` was entered.
    HangStarted,
    /// `Hang`'s handler future was dropped (the call was cancelled).
    HangDropped,
    /// A response stream was dropped before its end: the call went away.
    StreamAbandoned,
}

/// The `Echo` service. See `proto/testing/echo.proto` for what each field asks of it.
#[derive(Clone, Debug)]
pub struct EchoService {
    events: mpsc::UnboundedSender<Event>,
    barrier: Option<Arc<Barrier>>,
    runs: Arc<std::sync::Mutex<Vec<Run>>>,
    log_runs: bool,
    produced: Arc<std::sync::atomic::AtomicU64>,
}

/// One run of a handler that answers from a single request message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// The method's name, as in the `.proto` (`Unary`, `Lookup`, ...).
    pub method: String,
    /// Whether the call came as 0-RTT early data.
    pub early_data: bool,
}

/// Reports an event when dropped, unless disarmed.
struct DropReport(Option<mpsc::UnboundedSender<Event>>, Event);

impl Drop for DropReport {
    fn drop(&mut self) {
        if let Some(events) = self.0.take() {
            let _ = events.send(self.1);
        }
    }
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

/// A response stream that reports [`Event::StreamAbandoned`] if it is dropped before its end.
struct Watched {
    inner: ReceiverStream<Result<EchoReply, Status>>,
    report: DropReport,
}

impl Watched {
    fn boxed(
        rx: mpsc::Receiver<Result<EchoReply, Status>>,
        events: mpsc::UnboundedSender<Event>,
    ) -> ReplyStream {
        Box::pin(Self {
            inner: ReceiverStream::new(rx),
            report: DropReport(Some(events), Event::StreamAbandoned),
        })
    }
}

impl Stream for Watched {
    type Item = Result<EchoReply, Status>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let next = Pin::new(&mut self.inner).poll_next(cx);
        if let std::task::Poll::Ready(None) = next {
            // Ended normally: nothing to report.
            self.report.0 = None;
        }
        next
    }
}

fn early_data<T>(request: &Request<T>) -> bool {
    request.extensions().get::<quicrpc::ZeroRtt>() == Some(&quicrpc::ZeroRtt::Accepted)
}

impl EchoService {
    fn record<T>(&self, method: &str, request: &Request<T>) {
        if !self.log_runs {
            return;
        }
        let run = Run {
            method: method.to_owned(),
            early_data: early_data(request),
        };
        self.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(run);
    }

    fn reply<T>(request: &Request<T>, message: &EchoRequest, index: u32) -> EchoReply {
        EchoReply {
            early_data: early_data(request),
            client_names: request
                .extensions()
                .get::<quicrpc::tls::PeerCertificates>()
                .map(|peer| peer.subject_alt_names().join(","))
                .unwrap_or_default(),
            message: message.message.clone(),
            payload: vec![0xab; message.response_size as usize],
            priority: request
                .extensions()
                .get::<quicrpc::Priority>()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            index,
            peer: request
                .remote_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            timeout_ms: request
                .metadata()
                .get("grpc-timeout")
                .and_then(|v| v.to_str().ok())
                .and_then(timeout_millis)
                .unwrap_or(0),
        }
    }

    fn failure(message: &EchoRequest) -> Status {
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert("x-failure", "yes".parse().expect("static ASCII"));
        Status::with_details_and_metadata(
            tonic::Code::from(message.fail_code),
            message.fail_message.clone(),
            message.fail_details.clone().into(),
            metadata,
        )
    }

    async fn unary_reply(
        &self,
        method: &str,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoReply>, Status> {
        self.record(method, &request);
        let message = request.get_ref();
        if message.barrier
            && let Some(barrier) = &self.barrier
        {
            barrier.wait().await;
        }
        pause(message.delay_ms).await;
        if message.fail_code != 0 {
            return Err(Self::failure(message));
        }
        let reply = Self::reply(&request, message, 0);
        let mut response = Response::new(reply);
        // Echo request metadata named x-echo-* back as response metadata.
        for (key, value) in request.metadata().iter().filter_map(|kv| match kv {
            tonic::metadata::KeyAndValueRef::Ascii(k, v) if k.as_str().starts_with("x-echo-") => {
                Some((k.clone(), v.clone()))
            }
            _ => None,
        }) {
            response.metadata_mut().insert(key, value);
        }
        if let Some(bin) = request.metadata().get_bin("x-echo-bin") {
            response
                .metadata_mut()
                .insert_bin("x-echo-bin", bin.clone());
        }
        Ok(response)
    }

    fn stream_replies(&self, method: &str, request: &Request<EchoRequest>) -> ReplyStream {
        self.record(method, request);
        let message = request.get_ref().clone();
        let first = Self::reply(request, &message, 0);
        let (tx, rx) = mpsc::channel(4);
        let produced = self.produced.clone();
        tokio::spawn(async move {
            for index in 0..message.response_count {
                if message.fail_code != 0 && index == message.fail_after {
                    let _ = tx.send(Err(Self::failure(&message))).await;
                    return;
                }
                pause(message.delay_ms).await;
                let reply = EchoReply {
                    index,
                    ..first.clone()
                };
                if tx.send(Ok(reply)).await.is_err() {
                    return;
                }
                produced.fetch_add(
                    u64::from(message.response_size),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            if message.fail_code != 0 && message.fail_after >= message.response_count {
                let _ = tx.send(Err(Self::failure(&message))).await;
            }
        });
        Watched::boxed(rx, self.events.clone())
    }
}

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        self.unary_reply("Unary", request).await
    }

    type ServerStreamStream = ReplyStream;

    async fn server_stream(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<ReplyStream>, Status> {
        Ok(Response::new(self.stream_replies("ServerStream", &request)))
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoReply>, Status> {
        let mut stream = request.into_inner();
        let mut count = 0;
        let mut message = String::new();
        let mut size = 0;
        while let Some(next) = stream.message().await? {
            if next.fail_code != 0 {
                return Err(Self::failure(&next));
            }
            count += 1;
            message.push_str(&next.message);
            size = next.response_size;
        }
        Ok(Response::new(EchoReply {
            message,
            payload: vec![0xab; size as usize],
            index: count,
            ..EchoReply::default()
        }))
    }

    type BidiStream = ReplyStream;

    async fn bidi(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<ReplyStream>, Status> {
        let mut stream = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut index = 0;
            loop {
                let next = match stream.message().await {
                    Ok(Some(next)) => next,
                    Ok(None) => return,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                if next.fail_code != 0 {
                    let _ = tx.send(Err(Self::failure(&next))).await;
                    return;
                }
                let reply = EchoReply {
                    message: next.message,
                    payload: vec![0xab; next.response_size as usize],
                    index,
                    ..EchoReply::default()
                };
                index += 1;
                if tx.send(Ok(reply)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Watched::boxed(rx, self.events.clone())))
    }

    async fn hang(&self, _request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let _report = DropReport(Some(self.events.clone()), Event::HangDropped);
        let _ = self.events.send(Event::HangStarted);
        std::future::pending().await
    }

    async fn urgent(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        self.unary_reply("Urgent", request).await
    }

    async fn lookup(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        self.unary_reply("Lookup", request).await
    }

    type FetchStream = ReplyStream;

    async fn fetch(&self, request: Request<EchoRequest>) -> Result<Response<ReplyStream>, Status> {
        Ok(Response::new(self.stream_replies("Fetch", &request)))
    }
}

/// An `Echo` server on a random loopback port, with the certificate clients need.
#[derive(Debug)]
pub struct TestServer {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// Its development certificate.
    pub cert: quicrpc::tls::SelfSigned,
    /// Its live connection counts.
    pub stats: quicrpc::ServerStats,
    /// Its health service's reporter (Echo starts SERVING).
    pub health: tonic_health::server::HealthReporter,
    events: Mutex<mpsc::UnboundedReceiver<Event>>,
    runs: Arc<std::sync::Mutex<Vec<Run>>>,
    produced: Arc<std::sync::atomic::AtomicU64>,
    shutdown: Option<oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<Result<(), quicrpc::Error>>>,
}

/// A tonic interceptor as a plain function.
pub type Interceptor = fn(Request<()>) -> Result<Request<()>, Status>;

/// Options for [`TestServer::start_with`].
#[derive(Debug, Default)]
pub struct TestOptions {
    /// Participants of the barrier that `barrier: true` requests wait at.
    pub barrier: Option<usize>,
    /// The certificate to serve (default: a new one).
    pub cert: Option<quicrpc::tls::SelfSigned>,
    /// The address to bind (default: `127.0.0.1:0`).
    pub addr: Option<std::net::SocketAddr>,
    /// Sockets bound elsewhere (another network namespace) to serve on instead of binding.
    pub sockets: Option<(Option<std::net::UdpSocket>, Option<std::net::TcpListener>)>,
    /// A tonic interceptor in front of the service (`EchoServer::with_interceptor`).
    pub interceptor: Option<Interceptor>,
    /// Keep no log of handler runs ([`TestServer::runs`] stays empty): for long runs, where
    /// the log would grow without bound.
    pub no_run_log: bool,
}

impl TestServer {
    /// Starts a server with default settings.
    pub async fn start() -> Self {
        Self::start_with(TestOptions::default(), |b| b).await
    }

    /// Starts a server on sockets bound inside `ns`, UDP and TCP on the same port.
    pub async fn start_in(ns: &netns::NetNs) -> Self {
        let ip = ns.ns_ip;
        let (udp, tcp) = ns.enter(|| {
            let udp = std::net::UdpSocket::bind((ip, 0)).expect("UDP in the namespace");
            let port = udp.local_addr().expect("address").port();
            let tcp = std::net::TcpListener::bind((ip, port)).expect("TCP in the namespace");
            (udp, tcp)
        });
        let options = TestOptions {
            sockets: Some((Some(udp), Some(tcp))),
            ..TestOptions::default()
        };
        Self::start_with(options, |b| b).await
    }

    /// Starts a server, letting the test adjust the builder.
    pub async fn start_with(
        options: TestOptions,
        configure: impl FnOnce(quicrpc::ServerBuilder) -> quicrpc::ServerBuilder,
    ) -> Self {
        trace_init();
        let cert = match options.cert {
            Some(cert) => cert,
            None => quicrpc::tls::SelfSigned::new(["localhost", "127.0.0.1"])
                .expect("generate certificate"),
        };
        let (events_tx, events) = mpsc::unbounded_channel();
        let runs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let produced = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let service = EchoService {
            events: events_tx,
            barrier: options.barrier.map(|n| Arc::new(Barrier::new(n))),
            runs: runs.clone(),
            log_runs: !options.no_run_log,
            produced: produced.clone(),
        };
        let echo = EchoServer::new(service)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip);
        // Health checking (Echo reported SERVING) and server reflection, as a deployment
        // would run them.
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<EchoServer<EchoService>>().await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .expect("reflection service");
        let builder = quicrpc::Server::builder()
            .identity(cert.identity())
            .add_service(health_service)
            .add_service(reflection);
        let builder = match options.interceptor {
            Some(check) => builder.add_service(
                tonic::service::interceptor::InterceptedService::new(echo, check),
            ),
            None => builder.add_service(echo),
        };
        let builder = configure(builder);
        let server = match options.sockets {
            Some((udp, tcp)) => builder
                .bind_sockets(udp, tcp)
                .expect("serve on given sockets"),
            None => {
                let addr = options
                    .addr
                    .unwrap_or_else(|| "127.0.0.1:0".parse().expect("address"));
                builder.bind(addr).await.expect("bind test server")
            }
        };
        let addr = server.local_addr();
        let stats = server.stats();
        let (shutdown, signal) = oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve_with_shutdown(async {
            let _ = signal.await;
        }));
        Self {
            addr,
            cert,
            stats,
            health,
            events: Mutex::new(events),
            runs,
            produced,
            shutdown: Some(shutdown),
            serving: Some(serving),
        }
    }

    /// A channel builder aimed at this server, trusting its certificate, QUIC only: the
    /// behaviour tests must not pass by falling back to TCP.
    pub fn channel_builder(&self) -> quicrpc::ChannelBuilder {
        self.any_transport_builder()
            .fallback(quicrpc::Fallback::QuicOnly)
    }

    /// A channel builder aimed at this server with the default policy (QUIC, falling back to
    /// TCP).
    pub fn any_transport_builder(&self) -> quicrpc::ChannelBuilder {
        quicrpc::Channel::builder(format!("https://localhost:{}", self.addr.port()))
            .ca_certificate(self.cert.ca_certificate())
    }

    /// A connected channel.
    pub async fn channel(&self) -> quicrpc::Channel {
        within("connect", self.channel_builder().connect())
            .await
            .expect("connect to test server")
    }

    /// A connected `Echo` client.
    pub async fn client(&self) -> EchoClient<quicrpc::Channel> {
        EchoClient::new(self.channel().await)
    }

    /// A connected channel with transport policy `policy` (QUIC only, TCP only, ...).
    pub async fn channel_over(&self, policy: quicrpc::Fallback) -> quicrpc::Channel {
        let connect = self.any_transport_builder().fallback(policy).connect();
        within(&format!("connect ({policy:?})"), connect)
            .await
            .expect("connect to test server")
    }

    /// A connected `Echo` client with transport policy `policy`.
    pub async fn client_over(&self, policy: quicrpc::Fallback) -> EchoClient<quicrpc::Channel> {
        EchoClient::new(self.channel_over(policy).await)
    }

    /// The handler runs so far of the methods that answer from one request message (`Unary`,
    /// `Urgent`, `Lookup`, `ServerStream`, `Fetch`), in order.
    pub fn runs(&self) -> Vec<Run> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Payload bytes the streaming handlers have handed to the server so far (each reply's
    /// `response_size`, counted once the reply is queued for sending).
    pub fn produced_bytes(&self) -> u64 {
        self.produced.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The next event the service reports.
    pub async fn next_event(&self) -> Event {
        within("service event", async {
            self.events.lock().await.recv().await
        })
        .await
        .expect("service alive")
    }

    /// The next event the service reports, waiting as long as it takes; `None` once the
    /// service is gone. For programs that serve until told to stop (`echo-server`); tests
    /// use the bounded [`Self::next_event`].
    pub async fn wait_event(&self) -> Option<Event> {
        self.events.lock().await.recv().await
    }

    /// Starts a graceful shutdown and returns the serve task, which ends when it is done.
    pub fn begin_shutdown(&mut self) -> tokio::task::JoinHandle<Result<(), quicrpc::Error>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.serving.take().expect("shutdown once")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(serving) = &self.serving {
            serving.abort();
        }
    }
}

/// Waits `ms` milliseconds; not at all for 0 (tokio's timer would round that up to a tick).
async fn pause(ms: u32) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms.into())).await;
    }
}

/// Milliseconds in a `grpc-timeout` value such as `5000000u`.
fn timeout_millis(value: &str) -> Option<u64> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => n * 3_600_000,
        "M" => n * 60_000,
        "S" => n * 1000,
        "m" => n,
        "u" => n / 1000,
        "n" => n / 1_000_000,
        _ => return None,
    })
}

/// Makes one unary call and returns the transport that carried it.
pub async fn transport_of(client: &mut EchoClient<quicrpc::Channel>) -> quicrpc::Transport {
    let response = within("call", client.unary(echo("which")))
        .await
        .expect("call succeeds");
    *response
        .extensions()
        .get::<quicrpc::Transport>()
        .expect("the channel records the transport")
}

/// Opens a server stream of 5 replies, 100 ms apart, and reads the first (index 0): a call
/// that is surely in flight for the next 400 ms.
pub async fn slow_stream_started(
    client: &mut EchoClient<quicrpc::Channel>,
) -> Streaming<EchoReply> {
    let request = EchoRequest {
        response_count: 5,
        delay_ms: 100,
        ..echo("in flight")
    };
    let mut stream = within("open", client.server_stream(request))
        .await
        .expect("stream opens")
        .into_inner();
    let first = within("first reply", stream.message())
        .await
        .expect("first reply")
        .expect("a reply");
    assert_eq!(first.index, 0);
    stream
}

/// Reads a reply stream to its end, returning the replies' indexes.
pub async fn indexes_to_end(stream: &mut Streaming<EchoReply>) -> Vec<u32> {
    let mut indexes = Vec::new();
    while let Some(reply) = within("next reply", stream.message())
        .await
        .expect("reply or end")
    {
        indexes.push(reply.index);
    }
    indexes
}

/// What a client in another language printed, after it exited successfully.
#[derive(Debug)]
pub struct ForeignRun {
    /// Its standard output: a `PASS <case>` line per case that passed.
    pub stdout: String,
    /// Its standard error, for failure messages.
    pub stderr: String,
}

impl ForeignRun {
    /// Fails the test unless the client printed `PASS <case>`.
    pub fn assert_passed(&self, program: &str, case: &str) {
        let pass = format!("PASS {case}");
        assert!(
            self.stdout.lines().any(|l| l == pass),
            "{program}: case {case} did not pass:\n{}\n{}",
            self.stdout,
            self.stderr
        );
    }
}

/// Runs `program script --target localhost:PORT --ca CA` (a client in another language,
/// trusting `server`'s CA) to its end, bounded by [`TIMEOUT`]. Fails the test, saying
/// `setup`, if the program cannot start ("THIS TEST DID NOT RUN") or exits with an error.
pub async fn run_foreign_client(
    program: &'static str,
    script: &'static str,
    server: &TestServer,
    setup: &str,
) -> ForeignRun {
    let dir = std::env::temp_dir().join(format!(
        "quicrpc-foreign-{program}-{}-{}",
        std::process::id(),
        server.addr.port()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, server.cert.ca_pem()).expect("write CA");
    let target = format!("localhost:{}", server.addr.port());
    let ca_path = ca.clone();
    // Every call in the scripts has its own 10 s deadline; `within` bounds the whole.
    let output = within(
        "client in another language",
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(program)
                .arg(script)
                .arg("--target")
                .arg(target)
                .arg("--ca")
                .arg(ca_path)
                .output()
        }),
    )
    .await
    .expect("client thread")
    .unwrap_or_else(|e| panic!("THIS TEST DID NOT RUN: cannot start {program} ({e}); {setup}"));
    let _ = std::fs::remove_dir_all(&dir);
    let run = ForeignRun {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    print!("{}", run.stdout);
    assert!(
        output.status.success(),
        "the {program} client failed ({setup}):\n{}",
        run.stderr
    );
    run
}

/// A request with the given text.
pub fn echo(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.to_owned(),
        ..EchoRequest::default()
    }
}
