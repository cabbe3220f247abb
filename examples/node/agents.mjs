// The agents demo driven from Node.js, with quicrpc's own client (bindings/node): spawn
// agents, stream their status, run a task with streamed progress, store and read back
// memories, upload an artifact in bulk while a CRITICAL call cuts ahead of it, terminate.
//
// Run with (from the repository root):
//
//   cargo build --release --example agents
//   (cd bindings/node && npm ci && npm run build)
//   node examples/node/agents.mjs
//
// It starts the Rust agents server (`agents --serve`) as a child process and connects to
// it over QUIC. Output (ids and times vary):
//
//   server on port 40231; connected over quic
//   agent-0: spawned, id 1
//   ...
//   agent-0: task step 1 of 3
//   ...
//   agent-0: stored fact-0 (version 1), read it back: 64 bytes
//   ...
//   bulk upload of 4 MiB (BULK) under way; terminate agent 4 (CRITICAL) answered in 1.9 ms
//     and a memory read at CRITICAL (the method's NORMAL overridden) in 0.8 ms
//   bulk upload done: 4194304 bytes in 48.2 ms
//   agent-0: 2 status updates acknowledged
//   agent-0: terminated (was running: true); again (IDEMPOTENT): was running: false
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '../../bindings/node/index.mjs';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SERVICE = 'agents.v1.AgentControl';
const AGENTS = 3;

/** Starts `agents --serve` and resolves to its port and CA once it listens. */
async function startServer() {
  const target = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
  const program = path.join(target, 'release', 'examples', 'agents');
  if (!existsSync(program)) {
    throw new Error(`no ${program}: build it with cargo build --release --example agents`);
  }
  const child = spawn(program, ['--serve'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const first = await new Promise((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`the agents server exited (${code})`)));
  });
  const { port, ca } = JSON.parse(first);
  // Closing its standard input stops it.
  return { port, ca, stop: () => child.stdin.end() };
}

const ms = (since) => `${(performance.now() - since).toFixed(1)} ms`;

/** One agent's life, up to its termination; returns its id and its status call. */
async function live(client, n) {
  const name = `agent-${n}`;
  const { agentId } = await client.unary(`${SERVICE}/Spawn`, { name, model: 'small' });
  console.log(`${name}: spawned, id ${agentId}`);

  // Status updates flow over one bidirectional stream (HIGH) for the agent's whole life.
  const status = client.bidi(`${SERVICE}/StatusUpdates`);
  const acked = (async () => {
    let count = 0;
    for await (const ack of status) count = Number(ack.sequence);
    return count;
  })();
  await status.write({ agentId, state: 'running' });

  // A task, its progress streamed back.
  for await (const step of client.serverStream(`${SERVICE}/ExecuteTask`, { agentId, task: 'summarise', steps: 3 })) {
    console.log(`${name}: task ${step.note}`);
  }

  // Memories (LOW), read back (NORMAL).
  for (let i = 0; i < 2; i++) {
    const key = `fact-${i}`;
    const value = Buffer.alloc(64, i);
    const { version } = await client.unary(`${SERVICE}/StoreMemory`, { agentId, key, value });
    const record = await client.unary(`${SERVICE}/RetrieveMemory`, { agentId, key });
    console.log(`${name}: stored ${key} (version ${version}), read it back: ${Buffer.from(record.value, 'base64').length} bytes`);
  }
  return { name, agentId, status, acked };
}

const server = await startServer();
const client = await Client.connect(`https://localhost:${server.port}`, {
  ca: server.ca,
  protoFiles: ['agents/agents.proto'],
  importPaths: [path.join(ROOT, 'proto')],
});
console.log(`server on port ${server.port}; connected over ${client.transport()}`);
try {
  const agents = await Promise.all(Array.from({ length: AGENTS }, (_, n) => live(client, n)));

  // A 4 MiB upload at BULK priority, and meanwhile one more agent spawned and terminated:
  // Terminate is CRITICAL, so its stream is sent ahead of the upload's.
  const bulkStart = performance.now();
  const chunks = (async function* () {
    for (let i = 0; i < 64; i++) yield { agentId: agents[0].agentId, data: Buffer.alloc(64 * 1024, 7) };
  })();
  const upload = client.clientStream(`${SERVICE}/BulkTransfer`, chunks);
  const extra = await client.unary(`${SERVICE}/Spawn`, { name: 'extra', model: 'small' });
  let urgent = performance.now();
  await client.unary(`${SERVICE}/Terminate`, { agentId: extra.agentId });
  console.log(`bulk upload of 4 MiB (BULK) under way; terminate agent ${extra.agentId} (CRITICAL) answered in ${ms(urgent)}`);
  // RetrieveMemory is NORMAL; this one call asks for CRITICAL.
  urgent = performance.now();
  await client.unary(`${SERVICE}/RetrieveMemory`, { agentId: agents[0].agentId, key: 'fact-0' }, { priority: 'critical' });
  console.log(`  and a memory read at CRITICAL (the method's NORMAL overridden) in ${ms(urgent)}`);
  const { bytes } = await upload;
  console.log(`bulk upload done: ${bytes} bytes in ${ms(bulkStart)}`);

  for (const { name, agentId, status, acked } of agents) {
    await status.write({ agentId, state: 'done' });
    status.end();
    console.log(`${name}: ${await acked} status updates acknowledged`);
    const first = await client.unary(`${SERVICE}/Terminate`, { agentId });
    const again = await client.unary(`${SERVICE}/Terminate`, { agentId });
    console.log(`${name}: terminated (was running: ${first.wasRunning === true}); again (IDEMPOTENT): was running: ${again.wasRunning === true}`);
  }
} finally {
  client.close();
  server.stop();
}
