//! A UDP relay in front of a QUIC server, for a server that dies without a word: after
//! [`Relay::cut`] it forwards nothing either way and says nothing (no ICMP, no close), which
//! is what a client sees of a server process killed with SIGKILL or a machine gone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::UdpSocket;

/// Forwards datagrams between clients (one at a time, the last one heard) and a server.
#[derive(Debug)]
pub struct Relay {
    /// Where clients send.
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// A relay on a loopback port of its own, to `server`.
    pub async fn start(server: SocketAddr) -> Self {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind relay"));
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind relay"));
        back.connect(server).await.expect("relay to server");
        let addr = front.local_addr().expect("relay address");
        let cut = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let cut = cut.clone();
            async move {
                let mut client: Option<SocketAddr> = None;
                let mut up = vec![0u8; 65_535];
                let mut down = vec![0u8; 65_535];
                loop {
                    tokio::select! {
                        got = front.recv_from(&mut up) => {
                            let Ok((n, from)) = got else { continue };
                            client = Some(from);
                            if !cut.load(Ordering::Acquire) {
                                let _ = back.send(&up[..n]).await;
                            }
                        }
                        got = back.recv(&mut down) => {
                            let Ok(n) = got else { continue };
                            if let (Some(client), false) = (client, cut.load(Ordering::Acquire)) {
                                let _ = front.send_to(&down[..n], client).await;
                            }
                        }
                    }
                }
            }
        });
        Self { addr, cut, task }
    }

    /// From now on nothing gets through, either way, and nothing is said.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Release);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
