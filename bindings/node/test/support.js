// Test support: the Echo test server (tests/src/bin/echo-server.rs) in a child process, its
// events and connection counts, and bounded waits.
'use strict';

const { spawn } = require('node:child_process');
const path = require('node:path');
const fs = require('node:fs');
const readline = require('node:readline');

/** The bound on every wait in these tests. */
const TIMEOUT_MS = 20_000;

const ROOT = path.join(__dirname, '..', '..', '..');

function serverProgram() {
  const program = process.env.QUICRPC_ECHO_SERVER
    || path.join(process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target'), 'debug', 'echo-server');
  if (!fs.existsSync(program)) {
    throw new Error(`no test server at ${program}: build it with cargo build -p quicrpc-tests --bin echo-server, or set QUICRPC_ECHO_SERVER`);
  }
  return program;
}

/** Rejects after `ms` with `what` in the message, unless `promise` settles first. */
async function within(what, promise, ms = TIMEOUT_MS) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A running echo-server: `uri`, `ca`, `nextEvent()`, `stats()`, `until()`, `stop()`. */
class EchoServer {
  static async start() {
    const child = spawn(serverProgram(), [], { stdio: ['pipe', 'pipe', 'inherit'] });
    const server = new EchoServer(child);
    const ready = await within('the echo server starts', server.nextLine((line) => line.port !== undefined));
    server.port = ready.port;
    server.ca = ready.ca;
    server.uri = `https://localhost:${ready.port}`;
    return server;
  }

  constructor(child) {
    this.child = child;
    this.lines = [];
    this.waiters = [];
    this.exited = new Promise((resolve) => child.once('exit', resolve));
    readline.createInterface({ input: child.stdout }).on('line', (text) => {
      let line;
      try {
        line = JSON.parse(text);
      } catch {
        return; // not one of the server's lines (a log line)
      }
      this.lines.push(line);
      this.wake();
    });
    child.once('exit', () => this.wake());
  }

  wake() {
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  /** The first unread line that `accept` takes (earlier ones it skips stay unread). */
  async nextLine(accept) {
    for (;;) {
      const index = this.lines.findIndex(accept);
      if (index >= 0) return this.lines.splice(index, 1)[0];
      if (this.child.exitCode !== null) throw new Error(`the echo server exited (${this.child.exitCode})`);
      await new Promise((resolve) => this.waiters.push(resolve));
    }
  }

  /** Waits for the service to report `name` (HangStarted, HangDropped, StreamAbandoned). */
  nextEvent(name) {
    return within(`server event ${name}`, this.nextLine((line) => line.event === name));
  }

  /** The server's live counts: `{ quic, tcp, calls, produced }` (`produced`: reply payload bytes the streaming handlers handed over). */
  async stats() {
    this.child.stdin.write('stats\n');
    return (await within('server stats', this.nextLine((line) => line.stats !== undefined))).stats;
  }

  /** Polls the counts until `check(stats)` holds, within the bound. */
  async until(what, check) {
    let expired = false;
    try {
      return await within(what, (async () => {
        while (!expired) {
          const stats = await this.stats();
          if (check(stats)) return stats;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        return null;
      })());
    } finally {
      expired = true;
    }
  }

  async stop() {
    this.child.stdin.end();
    await within('the echo server exits', this.exited);
  }
}

module.exports = { EchoServer, within, TIMEOUT_MS, ROOT };
