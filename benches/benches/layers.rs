//! One unary call through each layer of the stack, both ends in one process on loopback, one
//! call at a time on one thread: what each layer adds to a call's cost, sockets and TLS
//! included. Each step down the list adds one layer to the one above it:
//!
//! - `quinn stream`: bare quinn, a bidirectional stream per call carrying the gRPC-sized
//!   request and reply bytes, no framing (the transport's own cost);
//! - `quicrpc wire to quicrpc's server`: the same call as gRPC, written in quicrpc's own
//!   frames straight onto a quinn stream (an encoded head, a DATA frame, FIN), to quicrpc's
//!   server, and its answer read to the end and its frames decoded: the server's whole stack
//!   (the stream and body layer, the head, limits, telemetry, tonic's codec and service)
//!   with no client stack above the frames;
//! - `quicrpc QUIC`: the same call through quicrpc's channel too (tonic's client codec,
//!   quicrpc's call future, stream and body layer, deadline and telemetry);
//! - `quicrpc TCP`: the same through quicrpc's TCP side (tonic's HTTP/2, quicrpc's TLS and
//!   layers);
//! - `quicrpc HTTP/3`: the same gRPC call from the hyperium `h3` client to quicrpc's server
//!   over HTTP/3 (gRFC G2), on the same QUIC endpoint;
//! - `tonic's client to quicrpc's TCP side` and `quicrpc's TCP client to tonic's server`:
//!   one end of the TCP side's stack each, against plain tonic at the other, to split what
//!   the TCP side costs over tonic between quicrpc's server and its client;
//! - `tonic`: plain tonic, client and server, TCP and TLS.
//!
//! ```text
//! cargo bench -p quicrpc-benches --bench layers -- --warm-up-time 1 --measurement-time 3
//! ```
#![allow(missing_docs)]

#[allow(unreachable_pub)] // generated code
mod helloworld {
    quicrpc::include_proto!("helloworld");
}

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use prost::Message;
use quicrpc::tls::SelfSigned;
use rustls::pki_types::pem::PemObject as _;
use tonic::{Request, Response, Status};

use helloworld::greeter_client::GreeterClient;
use helloworld::greeter_server::{Greeter, GreeterServer};
use helloworld::{HelloReply, HelloRequest};

const ALPN: &[u8] = b"bench-echo";

#[derive(Debug, Default)]
struct Hello;

#[tonic::async_trait]
impl Greeter for Hello {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        Ok(Response::new(HelloReply {
            message: request.into_inner().name,
        }))
    }
}

fn request() -> HelloRequest {
    HelloRequest {
        name: "x".repeat(16),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A bare quinn echo server: each stream's bytes, read to the end, written back.
fn quinn_server(cert: &SelfSigned) -> quinn::Endpoint {
    let identity = cert.identity();
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(cert.key_pem().as_bytes()).expect("key");
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_no_client_auth()
        .with_single_cert(identity.chain().to_vec(), key)
        .expect("server TLS");
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).expect("QUIC TLS");
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let endpoint =
        quinn::Endpoint::server(config, "127.0.0.1:0".parse().expect("address")).expect("bind");
    let accepting = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accepting.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let bytes = recv.read_to_end(1 << 20).await.expect("request");
                        send.write_all(&bytes).await.expect("reply");
                        let _ = send.finish();
                    });
                }
            });
        }
    });
    endpoint
}

async fn quinn_client(cert: &SelfSigned, addr: SocketAddr) -> (quinn::Endpoint, quinn::Connection) {
    quinn_client_offering(cert, addr, ALPN).await
}

async fn quinn_client_offering(
    cert: &SelfSigned,
    addr: SocketAddr,
    alpn: &[u8],
) -> (quinn::Endpoint, quinn::Connection) {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cert.ca_certificate().certs() {
        roots.add(ca.clone()).expect("CA");
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC TLS");
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")).expect("bind");
    let conn = endpoint
        .connect_with(
            quinn::ClientConfig::new(Arc::new(crypto)),
            addr,
            "localhost",
        )
        .expect("connect")
        .await
        .expect("handshake");
    (endpoint, conn)
}

/// One call's bytes over a bare quinn stream: the gRPC-sized request, then its echo.
async fn quinn_call(conn: &quinn::Connection, bytes: &[u8]) {
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    send.write_all(bytes).await.expect("write");
    send.finish().expect("finish");
    let reply = recv.read_to_end(1 << 20).await.expect("reply");
    assert_eq!(reply.len(), bytes.len());
}

/// One gRPC unary call in quicrpc's wire format on a bare quinn stream: `head` (an encoded
/// HEADERS frame), a DATA frame holding `message` (the gRPC-framed request), FIN; then the
/// answer read to its end, and its trailers checked for status OK.
async fn wire_call(conn: &quinn::Connection, head: &bytes::Bytes, message: &bytes::Bytes) {
    use quicrpc_wire::frame::{self, Frame, FrameDecoder};
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    let mut chunks = [
        head.clone(),
        frame::data_head(message.len()),
        message.clone(),
    ];
    send.write_all_chunks(&mut chunks).await.expect("write");
    send.finish().expect("finish");
    let reply = recv.read_to_end(1 << 20).await.expect("reply");
    let mut decoder = FrameDecoder::new(16 << 10);
    let mut buf = bytes::BytesMut::from(&reply[..]);
    let mut trailers = None;
    while let Some(frame) = decoder.decode(&mut buf).expect("a well-formed frame") {
        if let Frame::Trailers(block) = frame {
            trailers = Some(block);
        }
    }
    let trailers =
        quicrpc_wire::fields::decode_fields(&trailers.expect("trailers")).expect("trailer fields");
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..])
    );
}

type H3Requests = h3::client::SendRequest<h3_quinn::OpenStreams, bytes::Bytes>;

/// An HTTP/3 client connection to quicrpc's server, its driver running.
async fn h3_client(cert: &SelfSigned, addr: SocketAddr) -> (quinn::Endpoint, H3Requests) {
    let (endpoint, conn) = quinn_client_offering(cert, addr, b"h3").await;
    let (mut driver, requests) = h3::client::new(h3_quinn::Connection::new(conn))
        .await
        .expect("HTTP/3");
    tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
    (endpoint, requests)
}

/// One gRPC unary call over HTTP/3: head, the framed request, then the response to its
/// trailers.
async fn h3_call(mut requests: H3Requests, body: bytes::Bytes) {
    let request = http::Request::post("https://localhost/helloworld.Greeter/SayHello")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let mut stream = requests.send_request(request).await.expect("head");
    stream.send_data(body).await.expect("message");
    stream.finish().await.expect("finish");
    stream.recv_response().await.expect("response");
    while stream.recv_data().await.expect("data").is_some() {}
    let trailers = stream.recv_trailers().await.expect("trailers");
    assert!(trailers.is_some(), "a status");
}

async fn quicrpc_server(cert: &SelfSigned) -> SocketAddr {
    let server = quicrpc::Server::builder()
        .identity(cert.identity())
        .add_service(GreeterServer::new(Hello))
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = server.local_addr();
    tokio::spawn(server.serve());
    addr
}

async fn tonic_server(cert: &SelfSigned) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let tls = tonic::transport::ServerTlsConfig::new().identity(
        tonic::transport::Identity::from_pem(cert.cert_pem(), cert.key_pem()),
    );
    let server = tonic::transport::Server::builder()
        .tls_config(tls)
        .expect("TLS")
        .tcp_nodelay(true)
        .add_service(GreeterServer::new(Hello))
        .serve_with_incoming(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        );
    tokio::spawn(server);
    addr
}

/// A plain tonic channel (TCP, TLS) to the server at `addr`.
async fn tonic_channel_to(
    cert: &SelfSigned,
    addr: SocketAddr,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    tonic::transport::Endpoint::from_shared(format!("https://localhost:{}", addr.port()))
        .expect("URI")
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(cert.ca_pem()))
                .domain_name("localhost"),
        )?
        .tcp_nodelay(true)
        .connect()
        .await
}

/// A row of Greeter calls through `client` (a `GreeterClient` over any channel), one at a
/// time.
macro_rules! greeter_row {
    ($group:ident, $runtime:ident, $name:expr, $client:ident) => {
        $group.bench_function($name, |b| {
            b.iter_custom(|iters| {
                timed(&$runtime, iters, || {
                    let mut client = $client.clone();
                    async move {
                        client.say_hello(request()).await.expect("call");
                    }
                })
            });
        });
    };
}

/// Times `iters` calls of `call`, one after another.
fn timed<F: Future<Output = ()>>(
    runtime: &tokio::runtime::Runtime,
    iters: u64,
    mut call: impl FnMut() -> F,
) -> Duration {
    runtime.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            call().await;
        }
        start.elapsed()
    })
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cert = SelfSigned::new(["localhost"]).expect("certificate");
    let _guard = runtime.enter();

    let quinn_endpoint = quinn_server(&cert);
    let quinn_addr = quinn_endpoint.local_addr().expect("address");
    let (_client_endpoint, quinn_conn) = runtime.block_on(quinn_client(&cert, quinn_addr));
    // As many bytes as the gRPC request (5-byte prefix and message); the echo is as long
    // as the gRPC reply.
    let message = request().encode_to_vec();
    let mut bytes = vec![0u8];
    bytes.extend_from_slice(&u32::try_from(message.len()).expect("small").to_be_bytes());
    bytes.extend_from_slice(&message);

    let quicrpc_addr = runtime.block_on(quicrpc_server(&cert));
    let channel = |fallback| {
        let builder =
            quicrpc::Channel::builder(format!("https://localhost:{}", quicrpc_addr.port()))
                .ca_certificate(cert.ca_certificate())
                .fallback(fallback);
        runtime.block_on(builder.connect()).expect("connect")
    };
    let quic = GreeterClient::new(channel(quicrpc::Fallback::QuicOnly));
    let (_h3_endpoint, h3_requests) = runtime.block_on(h3_client(&cert, quicrpc_addr));
    let (_wire_endpoint, wire_conn) = runtime.block_on(quinn_client_offering(
        &cert,
        quicrpc_addr,
        quicrpc_wire::ALPN,
    ));
    let mut fields = http::HeaderMap::new();
    fields.insert(
        "content-type",
        http::HeaderValue::from_static("application/grpc"),
    );
    fields.insert("te", http::HeaderValue::from_static("trailers"));
    let wire_head = quicrpc_wire::fields::encode_request_head(
        "/helloworld.Greeter/SayHello",
        Some("localhost"),
        None,
        &fields,
    );
    let wire_message = bytes::Bytes::from(bytes.clone());
    let tcp = GreeterClient::new(channel(quicrpc::Fallback::TcpOnly));

    let tonic_addr = runtime.block_on(tonic_server(&cert));
    let tonic_channel = runtime.block_on(tonic_channel_to(&cert, tonic_addr));
    let tonic = GreeterClient::new(tonic_channel.expect("connect"));
    let tonic_to_quicrpc = GreeterClient::new(
        runtime
            .block_on(tonic_channel_to(&cert, quicrpc_addr))
            .expect("connect"),
    );
    let quicrpc_to_tonic = GreeterClient::new(
        runtime
            .block_on(
                quicrpc::Channel::builder(format!("https://localhost:{}", tonic_addr.port()))
                    .ca_certificate(cert.ca_certificate())
                    .fallback(quicrpc::Fallback::TcpOnly)
                    .connect(),
            )
            .expect("connect"),
    );

    let mut group = c.benchmark_group("unary call, both ends, one thread");
    group.bench_function("quinn stream", |b| {
        b.iter_custom(|iters| timed(&runtime, iters, || quinn_call(&quinn_conn, &bytes)));
    });
    group.bench_function("quicrpc wire to quicrpc's server", |b| {
        b.iter_custom(|iters| {
            timed(&runtime, iters, || {
                wire_call(&wire_conn, &wire_head, &wire_message)
            })
        });
    });
    greeter_row!(group, runtime, "quicrpc QUIC", quic);
    greeter_row!(group, runtime, "quicrpc TCP", tcp);
    let grpc_request = bytes::Bytes::from(bytes.clone());
    group.bench_function("quicrpc HTTP/3", |b| {
        b.iter_custom(|iters| {
            timed(&runtime, iters, || {
                h3_call(h3_requests.clone(), grpc_request.clone())
            })
        });
    });
    greeter_row!(
        group,
        runtime,
        "tonic's client to quicrpc's TCP side",
        tonic_to_quicrpc
    );
    greeter_row!(
        group,
        runtime,
        "quicrpc's TCP client to tonic's server",
        quicrpc_to_tonic
    );
    greeter_row!(group, runtime, "tonic", tonic);
    group.finish();
}

criterion_group!(layers, benches);
criterion_main!(layers);
