//! `quicrpc-netlab`: runs a command over an emulated link, or holds the link until Ctrl-C.
//!
//! ```text
//! quicrpc-netlab --delay-ms 25 --loss-pct 1 -- sh -c \
//!   'ip netns exec $NETLAB_NS server --addr $NETLAB_SERVER_IP:50051 & client $NETLAB_SERVER_IP:50051'
//! ```
//!
//! The command gets `NETLAB_NS` (the server side's namespace), `NETLAB_SERVER_IP` and
//! `NETLAB_CLIENT_IP`. The link's packet counts are printed at the end, so every run shows
//! the loss it really applied.

use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use quicrpc_netlab::{LinkConfig, Netlab};

/// Emulates a link with delay, loss and a rate limit between this network namespace (the
/// client side) and a new one (the server side), for TCP and UDP alike.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// One-way delay in milliseconds (the RTT is twice this).
    #[arg(long, default_value_t = 0.0)]
    delay_ms: f64,
    /// Packet loss in percent, each direction.
    #[arg(long, default_value_t = 0.0)]
    loss_pct: f64,
    /// Bottleneck rate in Mbit/s, each direction (no limit if absent).
    #[arg(long)]
    rate_mbit: Option<f64>,
    /// Bottleneck queue in KiB, with a rate.
    #[arg(long, default_value_t = 1024)]
    queue_kib: usize,
    /// Seed of the loss draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Drop every UDP packet, as a firewall that blocks UDP would.
    #[arg(long)]
    block_udp: bool,
    /// The command to run; without one, the link stays up until Ctrl-C.
    #[arg(last = true)]
    command: Vec<String>,
}

enum Event {
    Interrupted,
    Exited(Option<i32>),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = LinkConfig {
        delay: Duration::from_secs_f64(args.delay_ms / 1000.0),
        loss: args.loss_pct / 100.0,
        rate: args.rate_mbit.map(|m| (m * 1e6) as u64),
        queue_bytes: args.queue_kib * 1024,
        seed: args.seed,
        block_udp: args.block_udp,
    };
    let (events, event) = mpsc::channel();
    let interrupted = events.clone();
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = interrupted.send(Event::Interrupted);
    }) {
        eprintln!("netlab: cannot handle signals: {e}");
        return ExitCode::FAILURE;
    }
    let lab = match Netlab::start(config.clone()) {
        Ok(lab) => lab,
        Err(e) => {
            eprintln!("netlab: {e} (needs root, /dev/net/tun and iproute2)");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "netlab: client {} <-> server {} (namespace {}): delay {:?} each way, loss {} %, rate {}",
        lab.client_ip,
        lab.server_ip,
        lab.ns,
        config.delay,
        args.loss_pct,
        args.rate_mbit
            .map_or_else(|| "unlimited".into(), |r| format!("{r} Mbit/s"))
    );
    let mut child_pid = None;
    if let Some((program, rest)) = args.command.split_first() {
        let spawned = std::process::Command::new(program)
            .args(rest)
            .env("NETLAB_NS", &lab.ns)
            .env("NETLAB_SERVER_IP", lab.server_ip.to_string())
            .env("NETLAB_CLIENT_IP", lab.client_ip.to_string())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                eprintln!("netlab: cannot run {program}: {e}");
                return ExitCode::FAILURE;
            }
        };
        child_pid = i32::try_from(child.id())
            .ok()
            .map(nix::unistd::Pid::from_raw);
        std::thread::spawn(move || {
            let code = child.wait().ok().and_then(|status| status.code());
            let _ = events.send(Event::Exited(code));
        });
    } else {
        eprintln!(
            "netlab: up; NETLAB_NS={} NETLAB_SERVER_IP={} NETLAB_CLIENT_IP={}; Ctrl-C ends it",
            lab.ns, lab.server_ip, lab.client_ip
        );
    }
    let code = match event.recv() {
        Ok(Event::Exited(code)) => code,
        Ok(Event::Interrupted) | Err(_) => {
            if let Some(pid) = child_pid {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            }
            eprintln!("netlab: interrupted");
            Some(130)
        }
    };
    let (up, down) = lab.counts();
    eprintln!("netlab: client -> server: {up}");
    eprintln!("netlab: server -> client: {down}");
    drop(lab);
    ExitCode::from(code.map_or(1, |c| u8::try_from(c).unwrap_or(1)))
}
