//! The `Echo` test server as a program, for clients in other languages (the Node.js
//! binding's tests, `bindings/node/test/`).
//!
//! Serves on a random loopback port (QUIC and TCP, with reflection and health) and talks on
//! its standard streams, one JSON object a line:
//!
//! - first `{"port": PORT, "ca": "PEM"}`, once it listens;
//! - then `{"event": "HangStarted"}` and the like, as the service reports them ([`Event`]);
//! - `{"stats": {"quic": N, "tcp": N, "calls": N, "produced": N}}` for each `stats` line
//!   read on standard input (`produced`: the reply payload bytes that the streaming
//!   handlers have handed to the server, [`TestServer::produced_bytes`]).
//!
//! It exits when its standard input closes, so it never outlives the test that started it.
//! With `--barrier N`, requests that set `barrier` wait at a barrier of N (as
//! `TestOptions::barrier`): calls that stay under way on this server.
//!
//! Run with: `cargo run -p quicrpc-tests --bin echo-server`

use std::io::Write as _;

use quicrpc_tests::{Event, TestOptions, TestServer};
use tokio::io::{AsyncBufReadExt as _, BufReader};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let barrier = args
        .windows(2)
        .find(|pair| pair[0] == "--barrier")
        .and_then(|pair| pair[1].parse().ok());
    let options = TestOptions {
        barrier,
        ..TestOptions::default()
    };
    let server = TestServer::start_with(options, |b| b).await;
    let ready = format!(
        "{{\"port\": {}, \"ca\": {}}}",
        server.addr.port(),
        json_string(server.cert.ca_pem())
    );
    say(&ready);
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            event = server.wait_event() => match event {
                Some(event) => say(&format!("{{\"event\": \"{}\"}}", event_name(event))),
                None => return,
            },
            line = commands.next_line() => match line {
                Ok(Some(line)) if line.trim() == "stats" => say(&format!(
                    "{{\"stats\": {{\"quic\": {}, \"tcp\": {}, \"calls\": {}, \"produced\": {}}}}}",
                    server.stats.quic_connections(),
                    server.stats.tcp_connections(),
                    server.stats.calls(),
                    server.produced_bytes()
                )),
                Ok(Some(other)) => eprintln!("echo-server: unknown command {other:?}"),
                // Standard input closed (or unreadable): the test is over.
                Ok(None) | Err(_) => return,
            },
        }
    }
}

/// One line on standard output, flushed at once: the test waits for it.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // A test that went away (closed pipe) is not this program's failure.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

fn event_name(event: Event) -> &'static str {
    match event {
        Event::HangStarted => "HangStarted",
        Event::HangDropped => "HangDropped",
        Event::StreamAbandoned => "StreamAbandoned",
    }
}

/// `text` as a JSON string (PEM text: printable ASCII and newlines).
fn json_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 16);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}
