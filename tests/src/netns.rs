//! Network namespaces that a test creates for itself, to break the network path between a
//! client (in this namespace) and a server (in the new one) for real.
//!
//! Needs root, iproute2 and nftables (`.ci/run` installs them). A test that cannot create its
//! namespace fails, loudly: it never passes without having run.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

use quicrpc_netlab::run;

/// A network namespace joined to the test's own by a veth pair, removed on drop.
#[derive(Debug)]
pub struct NetNs {
    /// The namespace's name (`ip netns`).
    pub name: String,
    /// The address of the namespace's end of the link.
    pub ns_ip: Ipv4Addr,
    /// The address of this namespace's end of the link.
    pub host_ip: Ipv4Addr,
}

impl NetNs {
    /// Creates a namespace and links it to this one. Panics with what is missing if it
    /// cannot.
    pub fn create() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let id = (pid % 100_000) * 10 + n % 10;
        let subnet = u8::try_from((pid + n) % 250).expect("below 250") + 1;
        let ns = Self {
            name: format!("quicrpc-test-{id}"),
            ns_ip: Ipv4Addr::new(10, 99, subnet, 2),
            host_ip: Ipv4Addr::new(10, 99, subnet, 1),
        };
        let host_if = format!("qh{id}");
        let ns_if = format!("qn{id}");
        let host_cidr = format!("{}/24", ns.host_ip);
        let ns_cidr = format!("{}/24", ns.ns_ip);
        let steps: [(&str, Vec<&str>); 7] = [
            ("ip", vec!["netns", "add", &ns.name]),
            (
                "ip",
                vec![
                    "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns",
                    &ns.name,
                ],
            ),
            ("ip", vec!["addr", "add", &host_cidr, "dev", &host_if]),
            ("ip", vec!["link", "set", &host_if, "up"]),
            (
                "ip",
                vec!["-n", &ns.name, "addr", "add", &ns_cidr, "dev", &ns_if],
            ),
            ("ip", vec!["-n", &ns.name, "link", "set", &ns_if, "up"]),
            ("ip", vec!["-n", &ns.name, "link", "set", "lo", "up"]),
        ];
        for (program, args) in steps {
            if let Err(e) = run(program, &args) {
                panic!(
                    "THIS TEST DID NOT RUN: it cannot create its network namespace ({e}). \
                     It needs root, iproute2 and nftables; .ci/run installs them."
                );
            }
        }
        ns
    }

    /// Drops every UDP packet that arrives in the namespace, silently (nftables).
    pub fn block_udp(&self) {
        let steps: [&[&str]; 3] = [
            &["add", "table", "inet", "quicrpc_test"],
            &[
                "add",
                "chain",
                "inet",
                "quicrpc_test",
                "input",
                "{ type filter hook input priority 0; policy accept; }",
            ],
            &[
                "add",
                "rule",
                "inet",
                "quicrpc_test",
                "input",
                "meta",
                "l4proto",
                "udp",
                "drop",
            ],
        ];
        for args in steps {
            let mut full = vec!["netns", "exec", &self.name, "nft"];
            full.extend_from_slice(args);
            run("ip", &full)
                .unwrap_or_else(|e| panic!("THIS TEST DID NOT RUN: nftables failed ({e})"));
        }
    }

    /// Lets UDP through again.
    pub fn unblock_udp(&self) {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.name,
                "nft",
                "delete",
                "table",
                "inet",
                "quicrpc_test",
            ],
        )
        .unwrap_or_else(|e| panic!("nftables failed: {e}"));
    }

    /// Runs `f` on a thread that has joined the namespace: sockets it creates live there.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        quicrpc_netlab::in_namespace(&self.name, f)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Removing the namespace removes the veth pair with it.
        if let Err(e) = run("ip", &["netns", "del", &self.name]) {
            eprintln!("cleaning up network namespace {}: {e}", self.name);
        }
    }
}
