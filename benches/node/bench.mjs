// Node.js on quicrpc's client (bindings/node, over QUIC) against Node.js on @grpc/grpc-js
// (over TCP+TLS), both calling the same quicrpc server's agents service (`quicrpc-bench
// serve --server quicrpc`: QUIC and its gRPC-over-TCP side on one port).
//
// Run with (from the repository root, as root for --taskset's pinning and the netlab link):
//
//   cargo build --release -p quicrpc-benches -p quicrpc-netlab
//   (cd bindings/node && npm ci && npm run build:release)
//   (cd tests/node && npm ci)          # @grpc/grpc-js and @grpc/proto-loader, reused here
//   node benches/node/bench.mjs unary --reps 3 --duration 5 --inflight 1,50 --quiet wait
//   node benches/node/bench.mjs agents --reps 3 --agents 100 --rounds 2
//   target/release/quicrpc-netlab --delay-ms 25 --loss-pct 1 -- \
//     node benches/node/bench.mjs agents --reps 3 --agents 100 --rounds 2
//
// Each measurement is a client process of its own, pinned to core 1 (the server to core 0)
// with taskset; clients alternate within each repetition, and every ratio to grpc-js is
// taken within a repetition. With `--quiet wait`, on a machine shared with other work, each
// measurement waits until no compiler (rustc, cargo) or other quicrpc-bench process runs,
// and is run again if one started during it. Under quicrpc-netlab (NETLAB_NS set), the server runs in the
// link's server namespace and the clients reach it across the emulated link.
//
// unary: closed loop of RetrieveMemory (a 100-byte record) with N calls in flight on one
// connection; calls/s, p50 and p99. Three clients: quicrpc with messages as JS objects
// (JSON across the addon), quicrpc with messages as bytes (`raw`), grpc-js (objects,
// protobufjs via @grpc/proto-loader).
// agents: the agents demo's workload (examples/src/workload.rs), each agent's life: spawn;
// a status stream held open; a task with 10 progress steps; 4 stores and 4 retrieves of
// 1 KiB; a 256 KiB upload in 16 KiB chunks; terminate. p50 and p99 per method. With
// `--bulk bytes`, quicrpc writes the upload's chunks encoded (Uint8Array) rather than as
// JS objects.
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.join(HERE, '..', '..');
const SCRIPT = fileURLToPath(import.meta.url);
const SERVICE = 'agents.v1.AgentControl';
const PROTO_DIR = path.join(ROOT, 'proto');
const AGENTS_PROTO = 'agents/agents.proto';

// ---------------------------------------------------------------------------------------
// Arguments

function parseArgs(argv) {
  const args = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg.startsWith('--')) {
      const key = arg.slice(2);
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) args[key] = true;
      else args[key] = argv[++i];
    } else {
      args._.push(arg);
    }
  }
  return args;
}

// ---------------------------------------------------------------------------------------
// Clients: one interface over quicrpc's Client and a grpc-js client

async function quicrpcClient({ uri, ca }) {
  const { Client } = await import(path.join(ROOT, 'bindings/node/index.mjs'));
  const client = await Client.connect(uri, {
    ca,
    serverName: 'localhost',
    fallback: 'quic',
    protoFiles: [AGENTS_PROTO],
    importPaths: [PROTO_DIR],
  });
  if (client.transport() !== 'quic') throw new Error(`quicrpc connected over ${client.transport()}`);
  const full = (method) => `${SERVICE}/${method}`;
  return {
    unary: (method, request, options) => client.unary(full(method), request, options),
    serverStream: (method, request) => client.serverStream(full(method), request),
    clientStream: (method, requests) => client.clientStream(full(method), requests),
    bidi: (method) => client.bidi(full(method)),
    bytes: (value) => Buffer.from(value, 'base64').length,
    close: () => client.close(),
  };
}

async function grpcJsClient({ uri, ca }) {
  const require = createRequire(path.join(ROOT, 'tests/node/package.json'));
  const grpc = require('@grpc/grpc-js');
  const loader = require('@grpc/proto-loader');
  const definition = loader.loadSync(AGENTS_PROTO, {
    includeDirs: [PROTO_DIR],
    longs: String,
    defaults: false,
  });
  const { AgentControl } = grpc.loadPackageDefinition(definition).agents.v1;
  const target = new URL(uri).host;
  const client = new AgentControl(target, grpc.credentials.createSsl(Buffer.from(ca)), {
    'grpc.ssl_target_name_override': 'localhost',
    'grpc.default_authority': 'localhost',
  });
  await new Promise((resolve, reject) => client.waitForReady(Date.now() + 10_000, (e) => (e ? reject(e) : resolve())));
  return {
    unary: (method, request) => new Promise((resolve, reject) => {
      client[method](request, (e, reply) => (e ? reject(e) : resolve(reply)));
    }),
    serverStream: (method, request) => client[method](request),
    clientStream: (method, requests) => new Promise((resolve, reject) => {
      const call = client[method]((e, reply) => (e ? reject(e) : resolve(reply)));
      (async () => {
        for await (const request of requests) {
          if (!call.write(request)) await once(call, 'drain');
        }
        call.end();
      })().catch(reject);
    }),
    bidi: (method) => {
      const call = client[method]();
      return {
        write: async (message) => {
          if (!call.write(message)) await once(call, 'drain');
        },
        end: () => call.end(),
        [Symbol.asyncIterator]: () => call[Symbol.asyncIterator](),
      };
    },
    bytes: (value) => value.length,
    close: () => client.close(),
  };
}

const CLIENTS = {
  quicrpc: quicrpcClient,
  'quicrpc-raw': quicrpcClient,
  'grpc-js': grpcJsClient,
};

// ---------------------------------------------------------------------------------------
// Measurements (client processes)

function percentile(sorted, q) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** RetrieveRequest { agent_id: 1, key: "k" }, encoded. */
const RETRIEVE_RAW = Buffer.from([0x08, 0x01, 0x12, 0x01, 0x6b]);

async function unaryLoad(client, kind, { inflight, durationS, warmupS }) {
  await client.unary('StoreMemory', { agentId: '1', key: 'k', value: Buffer.alloc(100, 1) });
  const call = kind === 'quicrpc-raw'
    ? () => client.unary('RetrieveMemory', RETRIEVE_RAW, { raw: true })
    : () => client.unary('RetrieveMemory', { agentId: '1', key: 'k' });
  const start = performance.now();
  const measureFrom = start + warmupS * 1000;
  const end = measureFrom + durationS * 1000;
  const latencies = [];
  let errors = 0;
  const worker = async () => {
    for (;;) {
      const t0 = performance.now();
      if (t0 >= end) return;
      try {
        await call();
      } catch {
        errors++;
        continue;
      }
      const t1 = performance.now();
      if (t0 >= measureFrom && t1 <= end) latencies.push((t1 - t0) * 1000);
    }
  };
  await Promise.all(Array.from({ length: inflight }, worker));
  latencies.sort((a, b) => a - b);
  return {
    callsPerS: latencies.length / durationS,
    p50Us: percentile(latencies, 0.5),
    p99Us: percentile(latencies, 0.99),
    errors,
  };
}

const TASK_STEPS = 10;
const MEMORIES = 4;
const MEMORY_BYTES = 1024;
const BULK_BYTES = 256 * 1024;
const BULK_CHUNK = 16 * 1024;
/** A varint, as protobuf encodes one. */
function varint(value) {
  const bytes = [];
  let n = BigInt(value);
  while (n >= 0x80n) {
    bytes.push(Number(n & 0x7fn) | 0x80);
    n >>= 7n;
  }
  bytes.push(Number(n));
  return bytes;
}

/** Chunk { agent_id, data: BULK_CHUNK bytes of 7 }, encoded (`--bulk bytes`). */
function encodedChunk(agentId) {
  const head = Buffer.from([0x08, ...varint(agentId), 0x12, ...varint(BULK_CHUNK)]);
  return Buffer.concat([head, Buffer.alloc(BULK_CHUNK, 7)]);
}

const METHODS = ['Spawn', 'Terminate', 'ExecuteTask', 'StoreMemory', 'RetrieveMemory', 'StatusUpdates', 'BulkTransfer'];

/** One agent's life, as examples/src/workload.rs runs it; each call timed into `times`. */
async function agentLife(client, n, times) {
  const timed = async (method, work) => {
    const t0 = performance.now();
    const result = await work();
    times[method].push((performance.now() - t0) * 1000);
    return result;
  };
  const { agentId } = await timed('Spawn', () => client.unary('Spawn', { name: `agent-${n}`, model: 'small' }));
  const statusStart = performance.now();
  const status = client.bidi('StatusUpdates');
  const acked = (async () => {
    let count = 0;
    for await (const _ of status) count++;
    times.StatusUpdates.push((performance.now() - statusStart) * 1000);
    return count;
  })();
  await status.write({ agentId, state: 'running' });
  await timed('ExecuteTask', async () => {
    for await (const _ of client.serverStream('ExecuteTask', { agentId, task: 'summarise', steps: TASK_STEPS }));
  });
  for (let i = 0; i < MEMORIES; i++) {
    await timed('StoreMemory', () => client.unary('StoreMemory', { agentId, key: `fact-${i}`, value: Buffer.alloc(MEMORY_BYTES, i) }));
  }
  for (let i = 0; i < MEMORIES; i++) {
    const record = await timed('RetrieveMemory', () => client.unary('RetrieveMemory', { agentId, key: `fact-${i}` }));
    if (client.bytes(record.value) !== MEMORY_BYTES) throw new Error('memory came back with the wrong size');
  }
  const chunk = client.encodedChunks ? encodedChunk(agentId) : { agentId, data: Buffer.alloc(BULK_CHUNK, 7) };
  const chunks = (function* () {
    for (let i = 0; i < BULK_BYTES / BULK_CHUNK; i++) yield chunk;
  })();
  const sent = await timed('BulkTransfer', () => client.clientStream('BulkTransfer', chunks));
  if (Number(sent.bytes) !== BULK_BYTES) throw new Error('the bulk upload lost bytes');
  await status.write({ agentId, state: 'done' });
  status.end();
  if ((await acked) !== 2) throw new Error('status updates were not all acknowledged');
  await timed('Terminate', () => client.unary('Terminate', { agentId }));
}

async function agentsLoad(client, { agents, rounds }) {
  const times = Object.fromEntries(METHODS.map((m) => [m, []]));
  let failed = 0;
  const start = performance.now();
  for (let round = 0; round < rounds; round++) {
    const lives = Array.from({ length: agents }, (_, n) => agentLife(client, round * agents + n, times).catch((e) => {
      failed++;
      if (failed === 1) console.error(`an agent failed: ${e.message}`);
    }));
    await Promise.all(lives);
  }
  const result = { seconds: (performance.now() - start) / 1000, failed, methods: {} };
  for (const [method, list] of Object.entries(times)) {
    list.sort((a, b) => a - b);
    result.methods[method] = { calls: list.length, p50Ms: percentile(list, 0.5) / 1000, p99Ms: percentile(list, 0.99) / 1000 };
  }
  return result;
}

async function clientMain(args) {
  const kind = args.client;
  const client = await CLIENTS[kind]({ uri: args.uri, ca: readFileSync(args.ca, 'utf8') });
  // quicrpc only: the upload's chunks as encoded bytes rather than JS objects.
  client.encodedChunks = args.bulk === 'bytes' && kind !== 'grpc-js';
  try {
    const result = args.workload === 'agents'
      ? await agentsLoad(client, { agents: Number(args.agents), rounds: Number(args.rounds) })
      : await unaryLoad(client, kind, {
        inflight: Number(args.inflight),
        durationS: Number(args.duration),
        warmupS: Number(args.warmup),
      });
    process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
  } finally {
    client.close();
  }
}

// ---------------------------------------------------------------------------------------
// The run (the parent process): certificates, the server, the client processes, tables

/** A CA and a server certificate for localhost it signed (cert.pem, key.pem, ca.pem). */
function makeCerts() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'quicrpc-node-bench-'));
  const run = (args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=quicrpc node bench CA']);
  run(['req', ...ec, '-keyout', 'key.pem', '-out', 'server.csr', '-subj', '/CN=localhost']);
  run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', 'cert.pem', '-days', '2', '-extfile', 'server.ext']);
  return dir;
}

function pinned(core, argv, useTaskset) {
  return useTaskset ? ['taskset', ['-c', String(core), ...argv]] : [argv[0], argv.slice(1)];
}

async function startServer(args, certs) {
  const target = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
  const bench = args.bench || path.join(target, 'release', 'quicrpc-bench');
  if (!existsSync(bench)) throw new Error(`no ${bench}: cargo build --release -p quicrpc-benches (or --bench PATH)`);
  const ip = process.env.NETLAB_SERVER_IP || '127.0.0.1';
  let argv = [bench, 'serve', '--server', 'quicrpc', '--certs', certs, '--addr', ip];
  if (process.env.NETLAB_NS) argv = ['ip', 'netns', 'exec', process.env.NETLAB_NS, ...argv];
  const [program, rest] = pinned(0, argv, args.taskset !== 'off');
  const child = spawn(program, rest, { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const [line] = await Promise.race([
    once(lines, 'line'),
    once(child, 'exit').then(([code]) => { throw new Error(`the server exited (${code})`); }),
  ]);
  const port = Number(line.replace('LISTENING ', ''));
  return { uri: `https://${ip}:${port}`, stop: () => child.stdin.end(), child };
}

/** Process ids of `name` (exact), none if there are none. */
function pids(name) {
  try {
    return execFileSync('pgrep', ['-x', name], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

/**
 * What else is using the CPUs, on a machine shared with other work: a compiler, or a
 * benchmark process that is not this run's server.
 */
function otherLoad(server) {
  const others = [...pids('rustc'), ...pids('cargo'), ...pids('quicrpc-bench').filter((pid) => pid !== server.child.pid)];
  return others.length > 0;
}

/** Waits (at most `QUIET_WAIT_MS`, polling) until nothing else loads the machine. */
const QUIET_WAIT_MS = 15 * 60 * 1000;
async function quiet(server) {
  const until = Date.now() + QUIET_WAIT_MS;
  while (otherLoad(server)) {
    if (Date.now() > until) throw new Error('the machine did not become quiet within 15 minutes');
    await new Promise((resolve) => setTimeout(resolve, 10_000));
  }
}

/** Discarded measurements: other load appeared while they ran. */
let discarded = 0;

/**
 * One measurement in a client process of its own. With `--quiet wait`, it starts once
 * nothing else loads the machine, and is discarded and run again (up to 5 times) if
 * something else started meanwhile.
 */
async function measure(args, server, certs, kind, extra) {
  for (let attempt = 0; ; attempt++) {
    if (args.quiet === 'wait') await quiet(server);
    let disturbed = false;
    const watch = args.quiet === 'wait' ? setInterval(() => { disturbed ||= otherLoad(server); }, 500) : null;
    try {
      const result = await measureOnce(args, server, certs, kind, extra);
      if (!disturbed || attempt >= 5) return { ...result, disturbed };
      discarded++;
    } finally {
      if (watch) clearInterval(watch);
    }
  }
}

async function measureOnce(args, server, certs, kind, extra) {
  const argv = [process.execPath, SCRIPT, 'client', '--client', kind, '--uri', server.uri,
    '--ca', path.join(certs, 'ca.pem'), ...extra];
  const [program, rest] = pinned(1, argv, args.taskset !== 'off');
  const child = spawn(program, rest, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (chunk) => { out += chunk; });
  const [code] = await once(child, 'exit');
  const line = out.split('\n').find((l) => l.startsWith('RESULT '));
  if (code !== 0 || !line) throw new Error(`client ${kind} failed (${code}): ${out}`);
  return JSON.parse(line.slice('RESULT '.length));
}

/** The line under each table: how many measurements were run again, and any left disturbed. */
function disturbance(results) {
  const left = Object.values(results).flat().filter((r) => r.disturbed).length;
  return `\nMeasurements discarded so far because other load started during them: ${discarded}; kept while disturbed: ${left}.`;
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const range = (values, digits) => `${median(values).toFixed(digits)} [${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)}]`;

async function unaryRun(args, server, certs) {
  const clients = String(args.clients || 'quicrpc,quicrpc-raw,grpc-js').split(',');
  const reps = Number(args.reps || 3);
  for (const inflight of String(args.inflight || '1,50').split(',').map(Number)) {
    const results = Object.fromEntries(clients.map((c) => [c, []]));
    for (let rep = 0; rep < reps; rep++) {
      for (const kind of rep % 2 ? [...clients].reverse() : clients) {
        results[kind].push(await measure(args, server, certs, kind, [
          '--workload', 'unary', '--inflight', String(inflight),
          '--duration', String(args.duration || 5), '--warmup', String(args.warmup || 1),
        ]));
      }
    }
    console.log(`\n### unary RetrieveMemory, ${inflight} in flight (${reps} repetitions; median [min–max])\n`);
    console.log('| client | calls/s | p50 µs | p99 µs | calls/s ÷ grpc-js | p50 ÷ grpc-js | p99 ÷ grpc-js | errors |');
    console.log('|---|---|---|---|---|---|---|---|');
    const base = results['grpc-js'];
    for (const kind of clients) {
      const r = results[kind];
      const ratio = (key) => (base ? range(r.map((x, i) => x[key] / base[i][key]), 2) : '–');
      console.log(`| ${kind} | ${range(r.map((x) => x.callsPerS), 0)} | ${range(r.map((x) => x.p50Us), 0)} | ${range(r.map((x) => x.p99Us), 0)} | ${ratio('callsPerS')} | ${ratio('p50Us')} | ${ratio('p99Us')} | ${r.reduce((a, x) => a + x.errors, 0)} |`);
    }
    if (args.quiet === 'wait') console.log(disturbance(results));
  }
}

async function agentsRun(args, server, certs) {
  const clients = String(args.clients || 'quicrpc,grpc-js').split(',');
  const reps = Number(args.reps || 3);
  const results = Object.fromEntries(clients.map((c) => [c, []]));
  for (let rep = 0; rep < reps; rep++) {
    for (const kind of rep % 2 ? [...clients].reverse() : clients) {
      results[kind].push(await measure(args, server, certs, kind, [
        '--workload', 'agents', '--agents', String(args.agents || 100), '--rounds', String(args.rounds || 2),
        '--bulk', String(args.bulk || 'objects'),
      ]));
    }
  }
  const link = process.env.NETLAB_NS ? 'over the quicrpc-netlab link' : 'loopback';
  console.log(`\n### agents workload, ${args.agents || 100} agents × ${args.rounds || 2} rounds, ${link} (${reps} repetitions; ms, median [min–max])\n`);
  const head = clients.map((c) => `${c} p50 | ${c} p99`).join(' | ');
  console.log(`| method | calls per run | ${head} | p99 ${clients[0]} ÷ grpc-js |`);
  console.log(`|---|---|${clients.map(() => '---|---|').join('')}---|`);
  const base = results['grpc-js'];
  for (const method of METHODS) {
    const cells = clients.map((c) => {
      const r = results[c].map((x) => x.methods[method]);
      return `${range(r.map((x) => x.p50Ms), 1)} | ${range(r.map((x) => x.p99Ms), 1)}`;
    });
    const ratio = base ? range(results[clients[0]].map((x, i) => x.methods[method].p99Ms / base[i].methods[method].p99Ms), 2) : '–';
    console.log(`| ${method} | ${results[clients[0]][0].methods[method].calls} | ${cells.join(' | ')} | ${ratio} |`);
  }
  for (const c of clients) {
    console.log(`\n${c}: run time ${range(results[c].map((x) => x.seconds), 2)} s; failed agents ${results[c].reduce((a, x) => a + x.failed, 0)}`);
  }
  if (args.quiet === 'wait') console.log(disturbance(results));
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const [mode] = args._;
  if (mode === 'client') return clientMain(args);
  if (mode !== 'unary' && mode !== 'agents') {
    throw new Error('usage: bench.mjs unary|agents [--reps N] [--duration S] [--warmup S] [--inflight 1,50] [--agents N] [--rounds N] [--clients a,b] [--bulk objects|bytes] [--bench PATH] [--taskset off] [--quiet wait]');
  }
  const certs = makeCerts();
  const server = await startServer(args, certs);
  console.log(`node ${process.version}; server ${server.uri}; ${os.cpus().length} CPUs; server on core 0, clients on core 1${args.taskset === 'off' ? ' (not pinned)' : ''}`);
  try {
    if (mode === 'unary') await unaryRun(args, server, certs);
    else await agentsRun(args, server, certs);
  } finally {
    server.stop();
    rmSync(certs, { recursive: true, force: true });
  }
}

await main();
