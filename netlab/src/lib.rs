//! A link emulator for benchmarks and tests on kernels without `netem`.
//!
//! [`Netlab::start`] creates a network namespace for the server side and two TUN devices:
//! one in this namespace (the client's end, [`Netlab::client_ip`]) and one moved into the new
//! namespace (the server's end, [`Netlab::server_ip`]). A relay in this process carries every
//! IP packet from one device to the other, so TCP and UDP see the same link: each packet is
//! dropped with probability `loss`, held for the one-way `delay`, and, with a `rate`, queued
//! behind the packets before it as on a real bottleneck (a drop-tail queue of `queue_bytes`).
//!
//! Dropping the [`Netlab`] stops the relay and removes the namespace; the TUN devices go with
//! the process's file descriptors, so nothing outlives the process but a namespace left by a
//! killed one (which the next start with the same name removes).
//!
//! Needs root, `/dev/net/tun` and iproute2.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the link does to each packet, in each direction.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// One-way delay; the round-trip time is twice this.
    pub delay: Duration,
    /// Probability that a packet is dropped, from 0 to 1.
    pub loss: f64,
    /// Bottleneck rate in bits per second; `None` for no limit.
    pub rate: Option<u64>,
    /// With a rate: the bottleneck queue, in bytes; packets that find it full are dropped.
    pub queue_bytes: usize,
    /// Seed of the loss draws, so that runs are repeatable.
    pub seed: u64,
    /// Drop every UDP packet (counted as dropped), as a firewall that blocks UDP would:
    /// QUIC cannot get through, TCP can.
    pub block_udp: bool,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            loss: 0.0,
            rate: None,
            queue_bytes: 1 << 20,
            seed: 1,
            block_udp: false,
        }
    }
}

/// Packet counts of one direction of the link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectionCounts {
    /// Packets read from the sending side's device.
    pub received: u64,
    /// Packets dropped by the loss draw.
    pub dropped: u64,
    /// Packets dropped because the bottleneck queue was full.
    pub overflowed: u64,
    /// Packets written to the receiving side's device.
    pub delivered: u64,
    /// Bytes of those packets, IP headers included.
    pub delivered_bytes: u64,
}

impl std::fmt::Display for DirectionCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} received, {} dropped ({:.2} %), {} overflowed, {} delivered",
            self.received,
            self.dropped,
            100.0 * self.dropped as f64 / self.received.max(1) as f64,
            self.overflowed,
            self.delivered
        )
    }
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    dropped: AtomicU64,
    overflowed: AtomicU64,
    delivered: AtomicU64,
    delivered_bytes: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> DirectionCounts {
        DirectionCounts {
            received: self.received.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            overflowed: self.overflowed.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            delivered_bytes: self.delivered_bytes.load(Ordering::Relaxed),
        }
    }
}

/// A running emulated link between this namespace (client side) and a new one (server side).
#[derive(Debug)]
pub struct Netlab {
    /// The server side's network namespace (`ip netns exec <ns> ...`).
    pub ns: String,
    /// The client side's address, in this namespace.
    pub client_ip: Ipv4Addr,
    /// The server side's address, in [`Netlab::ns`].
    pub server_ip: Ipv4Addr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    counters: [Arc<Counters>; 2],
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.snapshot().fmt(f)
    }
}

/// Runs a command (`ip`, `nft`, ...), returning its stderr on failure.
pub fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program} {}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn open_tun(name: &str) -> Result<tun::Device, String> {
    let mut config = tun::Configuration::default();
    config.tun_name(name).mtu(1500);
    tun::create(&config).map_err(|e| format!("creating TUN device {name}: {e}"))
}

impl Netlab {
    /// Sets up the namespace, the devices and the relay. Each call in a process gets its own
    /// namespace, device names and subnet (10.98.x.0/24).
    pub fn start(config: LinkConfig) -> Result<Self, String> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let id = (pid % 100_000) * 10 + n % 10;
        let subnet = u8::try_from((pid + n) % 250).expect("below 250") + 1;
        let ns = format!("quicrpc-lab-{id}");
        let (client_if, server_if) = (format!("qlc{id}"), format!("qls{id}"));
        let client_ip = Ipv4Addr::new(10, 98, subnet, 1);
        let server_ip = Ipv4Addr::new(10, 98, subnet, 2);
        // A namespace left by a killed run of the same name.
        let _ = run("ip", &["netns", "del", &ns]);
        run("ip", &["netns", "add", &ns])?;
        let mut lab = Self {
            ns: ns.clone(),
            client_ip,
            server_ip,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            counters: Default::default(),
        };
        let client_dev = Arc::new(open_tun(&client_if)?);
        let server_dev = Arc::new(open_tun(&server_if)?);
        let client_cidr = format!("{client_ip}/24");
        let server_cidr = format!("{server_ip}/24");
        let steps: [&[&str]; 8] = [
            &["addr", "add", &client_cidr, "dev", &client_if],
            &["link", "set", &client_if, "txqueuelen", "10000", "up"],
            &["link", "set", &server_if, "netns", &ns],
            &["-n", &ns, "addr", "add", &server_cidr, "dev", &server_if],
            &[
                "-n",
                &ns,
                "link",
                "set",
                &server_if,
                "txqueuelen",
                "10000",
                "up",
            ],
            &["-n", &ns, "link", "set", "lo", "up"],
            &["-n", &ns, "route", "replace", "default", "dev", &server_if],
            &["link", "show", &client_if],
        ];
        for args in steps {
            run("ip", args)?;
        }
        for (dir, (from, to)) in [
            (client_dev.clone(), server_dev.clone()),
            (server_dev, client_dev),
        ]
        .into_iter()
        .enumerate()
        {
            let counters = lab.counters[dir].clone();
            let stop = lab.stop.clone();
            let seed = config.seed.wrapping_add(dir as u64);
            let config = config.clone();
            let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
            let writer_counters = counters.clone();
            lab.threads.push(std::thread::spawn(move || {
                deliver(&to, &rx, &writer_counters);
            }));
            lab.threads.push(std::thread::spawn(move || {
                relay(&from, &tx, &config, seed, &counters, &stop);
            }));
        }
        Ok(lab)
    }

    /// The packet counts so far: client to server, then server to client.
    pub fn counts(&self) -> (DirectionCounts, DirectionCounts) {
        (self.counters[0].snapshot(), self.counters[1].snapshot())
    }

    /// Runs `f` on a thread inside the server side's namespace: sockets it creates live
    /// there.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_namespace(&self.ns, f)
    }
}

impl Drop for Netlab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if let Err(e) = run("ip", &["netns", "del", &self.ns]) {
            eprintln!("netlab: removing namespace {}: {e}", self.ns);
        }
    }
}

/// Runs `f` on a thread that has joined the network namespace `ns` (`ip netns` name).
pub fn in_namespace<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("joining {path}: {e}"));
                f()
            })
            .join()
            .expect("namespace thread")
    })
}

/// Reads packets from `from`, drops or schedules them, and hands them to the writer.
fn relay(
    from: &tun::Device,
    to_writer: &mpsc::Sender<(Instant, Vec<u8>)>,
    config: &LinkConfig,
    seed: u64,
    counters: &Counters,
    stop: &AtomicBool,
) {
    let mut rng = Rng::new(seed);
    let mut buf = vec![0; 65536];
    // When the bottleneck finishes sending what is queued.
    let mut link_free = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let n = match from.recv_timeout(&mut buf, Duration::from_millis(50)) {
            Ok(0) => continue,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        };
        counters.received.fetch_add(1, Ordering::Relaxed);
        if config.block_udp && is_udp(&buf[..n]) {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if config.loss > 0.0 && rng.unit() <= config.loss {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let now = Instant::now();
        let sent = match config.rate {
            None => now,
            Some(rate) => {
                let start = link_free.max(now);
                let backlog = (start - now).as_secs_f64() * rate as f64 / 8.0;
                if backlog + n as f64 > config.queue_bytes as f64 {
                    counters.overflowed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                link_free = start + Duration::from_secs_f64(n as f64 * 8.0 / rate as f64);
                link_free
            }
        };
        if to_writer
            .send((sent + config.delay, buf[..n].to_vec()))
            .is_err()
        {
            return;
        }
    }
}

/// Whether an IP packet carries UDP: IPv4's protocol byte or IPv6's next header (without
/// extension headers, which this link never sees) is 17.
fn is_udp(packet: &[u8]) -> bool {
    const UDP: u8 = 17;
    match packet.first().map(|b| b >> 4) {
        Some(4) => packet.get(9) == Some(&UDP),
        Some(6) => packet.get(6) == Some(&UDP),
        _ => false,
    }
}

/// Writes each packet to `to` at its release time (release times only grow).
fn deliver(to: &tun::Device, from_relay: &mpsc::Receiver<(Instant, Vec<u8>)>, counters: &Counters) {
    while let Ok((release, packet)) = from_relay.recv() {
        let now = Instant::now();
        if release > now {
            std::thread::sleep(release - now);
        }
        if to.send(&packet).is_ok() {
            counters.delivered.fetch_add(1, Ordering::Relaxed);
            counters
                .delivered_bytes
                .fetch_add(packet.len() as u64, Ordering::Relaxed);
        }
    }
}

/// A small seeded generator (xorshift64*): repeatable loss draws and arrivals, no dependency.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced by 1).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// Uniform in (0, 1].
    pub fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Exponentially distributed with the given mean.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * self.unit().ln()
    }
}

#[cfg(test)]
mod tests {
    use super::is_udp;

    #[test]
    fn udp_is_told_from_tcp_by_the_protocol_field() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[9] = 17;
        assert!(is_udp(&v4));
        v4[9] = 6;
        assert!(!is_udp(&v4));
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[6] = 17;
        assert!(is_udp(&v6));
        v6[6] = 6;
        assert!(!is_udp(&v6));
        assert!(!is_udp(&[]));
    }
}
