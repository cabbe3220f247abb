//! The processes `compare` runs, and what it reads from them. Every server and client is this
//! executable again, pinned to its own core with `taskset` (inside the emulated link's
//! namespace for a server behind one); a server stops when its standard input closes; each
//! process reports on standard output in `PREFIX key=value ...` lines; CPU time and resident
//! memory come from `/proc`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use quicrpc_netlab::Netlab;

use crate::BoxError;
use crate::cli::arg;
use crate::compare::Run;
use crate::transport::{ClientKind, ServerKind};

/// Where the processes run.
pub(crate) struct Placement {
    pub(crate) certs: PathBuf,
    pub(crate) server_core: Option<&'static str>,
    pub(crate) client_core: Option<&'static str>,
    /// The server's namespace and address, behind an emulated link.
    pub(crate) ns: Option<String>,
    pub(crate) server_ip: String,
    pub(crate) host: String,
}

impl Placement {
    /// Server on core 0 and client on core 1 if `pin`; the server behind `lab` if given.
    pub(crate) fn new(certs: PathBuf, pin: bool, lab: Option<&Netlab>) -> Self {
        Self {
            certs,
            server_core: pin.then_some("0"),
            client_core: pin.then_some("1"),
            ns: lab.map(|lab| lab.ns.clone()),
            server_ip: lab.map_or_else(|| "127.0.0.1".into(), |lab| lab.server_ip.to_string()),
            host: lab.map_or_else(|| "localhost".into(), |lab| lab.server_ip.to_string()),
        }
    }
}

/// A server process, stopped (by closing its standard input) when dropped.
pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) port: u16,
}

impl ServerProcess {
    pub(crate) fn start(kind: ServerKind, run: &Run) -> Result<Self, BoxError> {
        Self::start_with(kind, run, &[])
    }

    /// [`start`](Self::start), with `extra` flags for `serve`.
    pub(crate) fn start_with(
        kind: ServerKind,
        run: &Run,
        extra: &[String],
    ) -> Result<Self, BoxError> {
        let place = &run.place;
        let mut args = serve_flags(kind, run);
        args.extend_from_slice(extra);
        let (child, line) = start_pinned(place.server_core, place.ns.as_deref(), &args)?;
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .ok_or_else(|| format!("server said {line:?}"))?
            .parse()?;
        Ok(Self { child, port })
    }

    /// The flags that point a client subcommand at this server (`--port`, `--host`,
    /// `--certs`).
    pub(crate) fn address_flags(&self, place: &Placement) -> [String; 6] {
        [
            "--port".into(),
            self.port.to_string(),
            "--host".into(),
            place.host.clone(),
            "--certs".into(),
            place.certs.display().to_string(),
        ]
    }

    /// The process id, as `/proc` names it.
    pub(crate) fn pid(&self) -> String {
        self.child.id().to_string()
    }

    pub(crate) fn cpu_ms(&self) -> Option<f64> {
        cpu_ms_of(&self.pid())
    }

    /// Closes its standard input, which starts its graceful shutdown; does not wait for it.
    pub(crate) fn close_input(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Kills it with SIGKILL (`taskset` and `ip netns exec` exec the server, so the child is
    /// the server itself).
    pub(crate) fn kill(&mut self) -> std::io::Result<()> {
        self.child.kill()
    }

    /// Sends it signal `name` ("STOP", say) with `kill(1)`.
    pub(crate) fn signal(&self, name: &str) -> std::io::Result<()> {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid()])
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("kill -{name} failed")))
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The `serve` subcommand for a `kind` server with the run's settings.
fn serve_flags(kind: ServerKind, run: &Run) -> Vec<String> {
    let place = &run.place;
    let mut args = [
        "serve",
        "--server",
        &arg(kind),
        "--certs",
        &place.certs.display().to_string(),
        "--addr",
        &place.server_ip,
        "--cc",
        &arg(run.common.cc),
    ]
    .map(str::to_owned)
    .to_vec();
    if let Some(streams) = run.common.max_streams {
        args.extend(["--max-streams".to_owned(), streams.to_string()]);
    }
    args.extend(run.common.windows.flags());
    args
}

/// This executable with `args`, under `taskset -c <core>` when pinning, inside the network
/// namespace `ns` when given.
pub(crate) fn pinned(core: Option<&str>, ns: Option<&str>, args: &[String]) -> Command {
    let exe = std::env::current_exe().expect("own executable");
    let mut line: Vec<std::ffi::OsString> = Vec::new();
    if let Some(ns) = ns {
        line.extend(["ip", "netns", "exec", ns].map(Into::into));
    }
    if let Some(core) = core {
        line.extend(["taskset", "-c", core].map(Into::into));
    }
    line.push(exe.into());
    line.extend(args.iter().map(Into::into));
    let mut command = Command::new(&line[0]);
    command.args(&line[1..]);
    if let Some(cc) = TCP_CC_FOR_CHILDREN.get() {
        command.env(crate::transport::TCP_CC, cc);
    }
    command
}

/// `compare --tcp-cc`: the TCP congestion controller every child process is told to use.
pub(crate) static TCP_CC_FOR_CHILDREN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Starts this executable with `args` as [`pinned`] says, its standard input held open (the
/// process stops when it closes), and returns it with the first line it printed: empty if
/// it exited without one.
pub(crate) fn start_pinned(
    core: Option<&str>,
    ns: Option<&str>,
    args: &[String],
) -> Result<(Child, String), BoxError> {
    let mut child = pinned(core, ns, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    Ok((child, line))
}

/// Runs this executable's client subcommand `args` against `server` (pinned to the client
/// core), adding the server's port, host and certificates, and returns what `parse` made of
/// each line of its output that it accepted (at least one).
pub(crate) fn run_client<T>(
    server: &ServerProcess,
    place: &Placement,
    args: &[impl AsRef<str>],
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, BoxError> {
    let mut line: Vec<String> = args.iter().map(|a| a.as_ref().to_owned()).collect();
    line.extend(server.address_flags(place));
    let output = pinned(place.client_core, None, &line).output()?;
    let found: Vec<T> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(parse)
        .collect();
    if found.is_empty() {
        return Err(format!("{what} failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(found)
}

/// The flags that make a client subcommand a `kind` client with the run's QUIC settings
/// (`--client`, `--cc`, the windows).
pub(crate) fn client_flags(kind: ClientKind, run: &Run) -> Vec<String> {
    let mut flags = vec![
        "--client".to_owned(),
        arg(kind),
        "--cc".to_owned(),
        arg(run.common.cc),
    ];
    flags.extend(run.common.windows.flags());
    flags
}

/// Runs client subcommand `args` (the [`client_flags`] are added) as `kind` against a fresh
/// server; returns what `parse` accepted and the server's CPU time over the run, in ms.
pub(crate) fn on_fresh_server<T>(
    kind: ClientKind,
    run: &Run,
    args: &[impl AsRef<str>],
    parse: impl Fn(&str) -> Option<T>,
) -> Result<(Vec<T>, f64), BoxError> {
    let server = ServerProcess::start(kind.server(), run)?;
    let server_cpu = server.cpu_ms();
    let mut args: Vec<String> = args.iter().map(|a| a.as_ref().to_owned()).collect();
    args.extend(client_flags(kind, run));
    let what = format!("{} {}", kind.name(), args[0]);
    let found = run_client(&server, &run.place, &args, &what, parse)?;
    let cpu_ms = server_cpu
        .zip(server.cpu_ms())
        .map_or(f64::NAN, |(before, after)| after - before);
    Ok((found, cpu_ms))
}

/// Completes when standard input closes: how the parent process says "stop".
pub(crate) async fn stdin_closed() {
    // Blocking read on a helper thread: the runtime stays single-threaded.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = std::io::stdin().lines().count();
        let _ = tx.send(());
    });
    let _ = rx.await;
}

/// The `key=value` fields of an output line that starts with `prefix`.
pub(crate) fn parse_fields<'a>(line: &'a str, prefix: &str) -> Option<HashMap<&'a str, &'a str>> {
    Some(
        line.strip_prefix(prefix)?
            .split(' ')
            .filter_map(|kv| kv.split_once('='))
            .collect(),
    )
}

/// CPU time (user + system) of a process so far, in milliseconds, from `/proc/<pid>/stat`.
pub(crate) fn cpu_ms_of(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 1000.0 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Resident set size of process `pid` ("self" for this one), in KiB, from `/proc`.
pub(crate) fn rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Placement, client_flags, serve_flags};
    use crate::cli::{Cli, Cmd};
    use crate::compare::Run;
    use crate::transport::{ClientKind, ServerKind};

    fn run(line: &str) -> Run {
        let words = ["quicrpc-bench", "compare"]
            .into_iter()
            .chain(line.split_whitespace());
        let Cmd::Compare(scenario) = Cli::parse_from(words).command else {
            unreachable!("compare parses as compare")
        };
        Run {
            common: scenario.common().clone(),
            scenario: scenario.name(),
            place: Placement::new("certs".into(), false, None),
            lab: None,
        }
    }

    /// The common settings go to both processes: server and client.
    #[test]
    fn children_get_the_runs_settings() {
        for (line, server, client) in [
            (
                "latency",
                "serve --server quicrpc --certs certs --addr 127.0.0.1 --cc bbr",
                "--client quic --cc bbr",
            ),
            (
                "mixed --cc cubic --max-streams 100 --stream-window 8388608 --send-window 9",
                "serve --server quicrpc --certs certs --addr 127.0.0.1 --cc cubic \
                 --max-streams 100 --stream-window 8388608 --send-window 9",
                "--client quic --cc cubic --stream-window 8388608 --send-window 9",
            ),
            (
                "stream --conn-window 268435456",
                "serve --server quicrpc --certs certs --addr 127.0.0.1 --cc bbr \
                 --conn-window 268435456",
                "--client quic --cc bbr --conn-window 268435456",
            ),
        ] {
            let run = run(line);
            let server_line = serve_flags(ServerKind::Quicrpc, &run).join(" ");
            assert_eq!(server_line, server, "{line}");
            let client_line = client_flags(ClientKind::Quic, &run).join(" ");
            assert_eq!(client_line, client, "{line}");
        }
    }
}
