// Cancellation the server sees (AbortSignal, a loop left early), close() letting the
// connection go, schemas from .proto files, and the TCP transport.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const v8 = require('node:v8');
const vm = require('node:vm');
const { Client, status } = require('..');
const { EchoServer, within, ROOT } = require('./support');

const ECHO = 'quicrpc.testing.Echo';
let server;

before(async () => {
  server = await EchoServer.start();
});

after(async () => {
  await server.stop();
});

async function connect(options) {
  return within('connect', Client.connect(server.uri, { ca: server.ca, fallback: 'quic', ...options }));
}

async function failure(what, promise) {
  try {
    await within(what, promise);
  } catch (e) {
    return e;
  }
  assert.fail(`${what}: expected a failure, got ${JSON.stringify(await promise)}`);
}

test('an AbortSignal cancels a call, and the server sees the cancellation', async () => {
  const client = await connect();
  try {
    const controller = new AbortController();
    const call = client.unary(`${ECHO}/Hang`, {}, { signal: controller.signal });
    await server.nextEvent('HangStarted');
    controller.abort();
    const e = await failure('aborted call', call);
    assert.equal(e.code, status.CANCELLED);
    await server.nextEvent('HangDropped');
    // An already aborted signal: the call never gets going.
    const early = await failure('pre-aborted', client.unary(`${ECHO}/Unary`, {}, { signal: AbortSignal.abort() }));
    assert.equal(early.code, status.CANCELLED);
  } finally {
    client.close();
  }
});

test('leaving a for-await loop early cancels the stream at the server', async () => {
  const client = await connect();
  try {
    for await (const reply of client.serverStream(`${ECHO}/ServerStream`, { responseCount: 100, delayMs: 20 })) {
      assert.equal(reply.index || 0, 0);
      break;
    }
    await server.nextEvent('StreamAbandoned');
  } finally {
    client.close();
  }
});

test('close() cancels the calls under way and lets the connection go', async () => {
  const client = await connect();
  await server.until('one QUIC connection', (stats) => stats.quic === 1);
  const hanging = client.unary(`${ECHO}/Hang`, {});
  await server.nextEvent('HangStarted');
  client.close();
  const e = await failure('call on a closed client', hanging);
  assert.equal(e.code, status.CANCELLED);
  assert.match(e.details, /closed/);
  await server.nextEvent('HangDropped');
  await server.until('no connection left', (stats) => stats.quic === 0);
  assert.equal(client.transport(), 'closed');
  const after = await failure('new call', client.unary(`${ECHO}/Unary`, {}));
  assert.equal(after.code, status.UNAVAILABLE);
});

test('a client that is garbage-collected lets its connection go', async () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  await (async () => {
    const client = await connect();
    await within('unary', client.unary(`${ECHO}/Unary`, { message: 'then forgotten' }));
  })();
  await server.until('one QUIC connection', (stats) => stats.quic === 1);
  await server.until('the connection gone after collection', (stats) => {
    gc();
    return stats.quic === 0;
  });
});

test('message types from .proto files instead of reflection', async () => {
  const client = await connect({
    protoFiles: ['testing/echo.proto'],
    importPaths: [path.join(ROOT, 'proto')],
  });
  try {
    const reply = await within('unary', client.unary(`${ECHO}/Urgent`, { message: 'from a .proto' }));
    assert.equal(reply.message, 'from a .proto');
    assert.equal(reply.priority, 'critical');
  } finally {
    client.close();
  }
  const broken = await failure('a .proto that does not compile', Client.connect(server.uri, {
    ca: server.ca, protoFiles: [path.join(__dirname, 'broken.proto')],
  }));
  assert.equal(broken.code, status.INVALID_ARGUMENT);
  assert.match(broken.details, /compiling protoFiles/);
});

test("fallback 'tcp': calls over gRPC on TCP", async () => {
  const client = await connect({ fallback: 'tcp' });
  try {
    assert.equal(client.transport(), 'tcp');
    const reply = await within('unary', client.unary(`${ECHO}/Unary`, { message: 'over tcp' }));
    assert.equal(reply.message, 'over tcp');
    await server.until('a TCP connection', (stats) => stats.tcp === 1);
  } finally {
    client.close();
  }
});

test('ESM: the same API from import', async () => {
  const esm = await import('../index.mjs');
  assert.equal(esm.Client, Client);
  assert.equal(esm.status.CANCELLED, 1);
});
