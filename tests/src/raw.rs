//! A hand-driven peer that speaks quicrpc's wire format frame by frame, to misbehave on
//! purpose: a raw client against the real server, and a raw server against the real channel.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;
use quicrpc_wire::{self as wire, fields, frame, frame::Frame, frame::FrameDecoder};
use quinn::VarInt;

/// One raw QUIC connection to a quicrpc server.
#[derive(Debug)]
pub struct RawClient {
    /// The connection.
    pub conn: quinn::Connection,
    _endpoint: quinn::Endpoint,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config trusting `ca`. Its session cache (in the config) lets later connections
/// with the same config resume and send 0-RTT early data.
pub fn client_config(ca: &quicrpc::tls::Certificate) -> quinn::ClientConfig {
    client_config_offering(ca, wire::ALPN)
}

/// [`client_config`], offering `alpn` instead of quicrpc's protocol.
pub fn client_config_offering(ca: &quicrpc::tls::Certificate, alpn: &[u8]) -> quinn::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in ca.certs() {
        roots.add(cert.clone()).expect("CA certificate");
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    tls.enable_early_data = true;
    let quic_tls = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC TLS");
    quinn::ClientConfig::new(Arc::new(quic_tls))
}

impl RawClient {
    /// Connects to `addr`, trusting `ca`.
    pub async fn connect(addr: SocketAddr, ca: &quicrpc::tls::Certificate) -> Self {
        Self::connect_with(addr, client_config(ca)).await
    }

    /// Connects to `addr` with `config`, completing the handshake.
    pub async fn connect_with(addr: SocketAddr, config: quinn::ClientConfig) -> Self {
        let endpoint =
            quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")).expect("bind");
        let conn = endpoint
            .connect_with(config, addr, "localhost")
            .expect("connect")
            .await
            .expect("handshake");
        Self {
            conn,
            _endpoint: endpoint,
        }
    }

    /// Resumes a session of `config` with `addr`: the connection is usable for 0-RTT early
    /// data at once; the future tells whether the server accepted it. Panics if `config` holds
    /// no session ticket for the server.
    pub fn connect_early(
        addr: SocketAddr,
        config: quinn::ClientConfig,
    ) -> (Self, quinn::ZeroRttAccepted) {
        let endpoint =
            quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")).expect("bind");
        let connecting = endpoint
            .connect_with(config, addr, "localhost")
            .expect("connect");
        let Ok((conn, accepted)) = connecting.into_0rtt() else {
            panic!("no session ticket to resume with: 0-RTT impossible");
        };
        let client = Self {
            conn,
            _endpoint: endpoint,
        };
        (client, accepted)
    }

    /// Opens a stream and sends a whole call to `path` on it: head, one message, finish.
    pub async fn call(
        &self,
        path: &str,
        message: &impl prost::Message,
    ) -> (quinn::SendStream, quinn::RecvStream) {
        let mut bytes = request_head(path, &[]).to_vec();
        bytes.extend_from_slice(&data_message(message));
        self.send(&bytes, true).await
    }

    /// Opens a stream and writes `bytes` on it; finishes it if `fin`.
    pub async fn send(&self, bytes: &[u8], fin: bool) -> (quinn::SendStream, quinn::RecvStream) {
        let (mut send, recv) = self.conn.open_bi().await.expect("open stream");
        send.write_all(bytes).await.expect("write");
        if fin {
            send.finish().expect("finish");
        }
        (send, recv)
    }
}

/// A request head frame for `path` with `fields` (plus content-type).
pub fn request_head(path: &str, extra: &[(&'static str, &str)]) -> Bytes {
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        http::HeaderValue::from_static("application/grpc"),
    );
    for (name, value) in extra {
        headers.insert(*name, value.parse().expect("header value"));
    }
    fields::encode_request_head(path, None, None, &headers)
}

/// A DATA frame holding one gRPC message (uncompressed) encoding `message`.
pub fn data_message(message: &impl prost::Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut grpc = BytesMut::new();
    grpc.put_u8(0);
    grpc.put_u32(body.len() as u32);
    grpc.put_slice(&body);
    frame::encode(frame::DATA, &grpc)
}

/// Raw frame bytes: a frame head for `ty` declaring `len`, followed by `payload` (which may be
/// shorter or longer than `len`).
pub fn frame_with_len(ty: u64, len: u64, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::new();
    frame::put_head(&mut buf, ty, len);
    buf.put_slice(payload);
    buf.freeze()
}

/// A field block frame from raw `(name, value)` pairs, unchecked.
pub fn raw_fields(ty: u64, pairs: &[(&[u8], &[u8])]) -> Bytes {
    let mut payload = BytesMut::new();
    for (name, value) in pairs {
        wire::varint::put(&mut payload, name.len() as u64);
        payload.put_slice(name);
        wire::varint::put(&mut payload, value.len() as u64);
        payload.put_slice(value);
    }
    frame::encode(ty, &payload)
}

/// What a raw client read back.
#[derive(Debug, Default)]
pub struct RawResponse {
    /// The response head.
    pub head: Option<HeaderMap>,
    /// Concatenated DATA payloads.
    pub data: Vec<u8>,
    /// The trailers.
    pub trailers: Option<HeaderMap>,
    /// The reset code, if the server reset the stream.
    pub reset: Option<u64>,
}

impl RawResponse {
    /// The response's one message (a unary response's), decoded after gRPC's 5-byte prefix.
    pub fn message<M: prost::Message + Default>(&self) -> M {
        let body = self.data.get(5..).expect("a message in the response");
        M::decode(body).expect("a valid message")
    }

    /// The `grpc-status` code, from the trailers or a trailers-only head.
    pub fn code(&self) -> Option<tonic::Code> {
        let fields = self.trailers.as_ref().or(self.head.as_ref())?;
        fields
            .get("grpc-status")
            .map(|v| tonic::Code::from_bytes(v.as_bytes()))
    }
}

/// Reads a whole response from `recv`.
pub async fn read_response(mut recv: quinn::RecvStream) -> RawResponse {
    let mut response = RawResponse::default();
    let mut decoder = FrameDecoder::new(1 << 20);
    let mut buf = BytesMut::new();
    loop {
        while let Some(frame) = decoder.decode(&mut buf).expect("server sent a valid frame") {
            match frame {
                Frame::Headers(block) => {
                    response.head = Some(fields::decode_fields(&block).expect("head"))
                }
                Frame::Data(data) => response.data.extend_from_slice(&data),
                Frame::Trailers(block) => {
                    response.trailers = Some(fields::decode_fields(&block).expect("trailers"))
                }
                Frame::GoAway => panic!("GOAWAY on a request stream"),
            }
        }
        match recv.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
            Ok(None) => return response,
            Err(quinn::ReadError::Reset(code)) => {
                response.reset = Some(code.into_inner());
                return response;
            }
            Err(e) => panic!("reading response: {e}"),
        }
    }
}

/// A QUIC server that speaks the wire format by hand, answering each call with whatever the
/// test's function writes.
#[derive(Debug)]
pub struct RawServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its certificate.
    pub cert: quicrpc::tls::SelfSigned,
    /// Receives one message each time a connection to this server ends.
    pub closed: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<quinn::ConnectionError>>,
    heads: Heads,
    endpoint: quinn::Endpoint,
}

/// The request heads a raw server has received, in order.
type Heads = Arc<std::sync::Mutex<Vec<fields::RequestHead>>>;

/// A raw server's answer: the bytes to write, then how to end the stream.
#[derive(Debug)]
pub enum Answer {
    /// Write the bytes, then FIN.
    Finish(Vec<Bytes>),
    /// Write the bytes, then reset with this code.
    Reset(Vec<Bytes>, u32),
    /// Close the whole connection.
    CloseConnection,
}

impl RawServer {
    /// Starts a raw server; `answer` maps a call's path to its answer.
    pub async fn start(answer: fn(&str) -> Answer) -> Self {
        let cert = quicrpc::tls::SelfSigned::new(["localhost"]).expect("certificate");
        let identity = cert.identity();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(cert.key_pem().as_bytes())
            .expect("key");
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_no_client_auth()
            .with_single_cert(identity.chain().to_vec(), key)
            .expect("server cert");
        tls.alpn_protocols = vec![wire::ALPN.to_vec()];
        let quic_tls = quinn::crypto::rustls::QuicServerConfig::try_from(tls).expect("QUIC TLS");
        let config = quinn::ServerConfig::with_crypto(Arc::new(quic_tls));
        let endpoint =
            quinn::Endpoint::server(config, "127.0.0.1:0".parse().expect("address")).expect("bind");
        let addr = endpoint.local_addr().expect("address");
        let accept = endpoint.clone();
        let (closed_tx, closed) = tokio::sync::mpsc::unbounded_channel();
        let heads = Heads::default();
        let received = heads.clone();
        tokio::spawn(async move {
            while let Some(incoming) = accept.accept().await {
                let closed_tx = closed_tx.clone();
                let received = received.clone();
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    let reason = loop {
                        match conn.accept_bi().await {
                            Ok((send, recv)) => {
                                let heads = received.clone();
                                tokio::spawn(serve_raw(conn.clone(), send, recv, answer, heads));
                            }
                            Err(e) => break e,
                        }
                    };
                    let _ = closed_tx.send(reason);
                });
            }
        });
        Self {
            addr,
            cert,
            closed: tokio::sync::Mutex::new(closed),
            heads,
            endpoint,
        }
    }

    /// The request heads received so far, in order of arrival.
    pub fn heads(&self) -> Vec<fields::RequestHead> {
        self.heads.lock().expect("heads").clone()
    }

    /// A channel to this server.
    pub async fn channel(&self) -> quicrpc::Channel {
        quicrpc::Channel::builder(format!("https://localhost:{}", self.addr.port()))
            .ca_certificate(self.cert.ca_certificate())
            .fallback(quicrpc::Fallback::QuicOnly)
            .connect()
            .await
            .expect("connect to raw server")
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.endpoint.close(VarInt::from_u32(0), b"");
    }
}

use rustls::pki_types::pem::PemObject as _;

async fn serve_raw(
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    answer: fn(&str) -> Answer,
    heads: Heads,
) {
    let mut decoder = FrameDecoder::new(1 << 20);
    let mut buf = BytesMut::new();
    let path = loop {
        if let Ok(Some(Frame::Headers(block))) = decoder.decode(&mut buf) {
            let head = fields::decode_request_head(&block).expect("request head");
            let path = head.path.clone();
            heads.lock().expect("heads").push(head);
            break path;
        }
        match recv.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
            _ => return,
        }
    };
    match answer(&path) {
        Answer::Finish(mut bytes) => {
            let _ = send.write_all_chunks(&mut bytes).await;
            let _ = send.finish();
        }
        Answer::Reset(mut bytes, code) => {
            let _ = send.write_all_chunks(&mut bytes).await;
            let _ = send.reset(VarInt::from_u32(code));
        }
        Answer::CloseConnection => conn.close(VarInt::from_u32(0x3), b"raw server closed"),
    }
    // Keep the stream open until the client is done with it.
    let _ = send.stopped().await;
}

/// A response head frame with `fields`.
pub fn response_head(extra: &[(&'static str, &str)]) -> Bytes {
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        http::HeaderValue::from_static("application/grpc"),
    );
    for (name, value) in extra {
        headers.insert(*name, value.parse().expect("header value"));
    }
    fields::encode_fields(frame::HEADERS, &headers)
}

/// A TRAILERS frame with `grpc-status: code`.
pub fn status_trailers(code: tonic::Code) -> Bytes {
    let mut headers = HeaderMap::new();
    headers.insert("grpc-status", (code as i32).into());
    fields::encode_fields(frame::TRAILERS, &headers)
}

/// A UDP relay between one client and a server that records every datagram the client
/// sends, so that a test can replay them.
#[derive(Debug)]
pub struct RecordingRelay {
    /// Where clients send to.
    pub addr: SocketAddr,
    recorded: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RecordingRelay {
    /// Starts relaying to `server`.
    pub async fn start(server: SocketAddr) -> Self {
        Self::start_with(server, true).await
    }

    /// Starts relaying to `server`, dropping everything the server sends back: the client's
    /// handshake never completes.
    pub async fn black_hole(server: SocketAddr) -> Self {
        Self::start_with(server, false).await
    }

    async fn start_with(server: SocketAddr, answer: bool) -> Self {
        let front = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind relay");
        let back = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind relay upstream");
        back.connect(server).await.expect("relay upstream");
        let addr = front.local_addr().expect("relay address");
        let recorded = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = recorded.clone();
        let task = tokio::spawn(async move {
            let mut client = None;
            let mut up = vec![0; 65536];
            let mut down = vec![0; 65536];
            loop {
                tokio::select! {
                    Ok((n, from)) = front.recv_from(&mut up) => {
                        client = Some(from);
                        log.lock().expect("relay log").push(up[..n].to_vec());
                        let _ = back.send(&up[..n]).await;
                    }
                    Ok(n) = back.recv(&mut down) => {
                        if let (Some(client), true) = (client, answer) {
                            let _ = front.send_to(&down[..n], client).await;
                        }
                    }
                    else => return,
                }
            }
        });
        Self {
            addr,
            recorded,
            task,
        }
    }

    /// The datagrams the client has sent so far, in order.
    pub fn recorded(&self) -> Vec<Vec<u8>> {
        self.recorded.lock().expect("relay log").clone()
    }
}

impl Drop for RecordingRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
