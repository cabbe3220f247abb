// The four call kinds over QUIC, messages as JSON and as bytes, metadata both ways, the
// priority the server applied, and 1,000 calls in flight on one client.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Client } = require('..');
const { EchoServer, within } = require('./support');

const ECHO = 'quicrpc.testing.Echo';
let server;
let client;

before(async () => {
  server = await EchoServer.start();
  client = await Client.connect(server.uri, { ca: server.ca, fallback: 'quic', emitDefaults: true });
});

after(async () => {
  client.close();
  await server.stop();
});

test('unary: JSON in, JSON out, over QUIC', async () => {
  const reply = await within('unary', client.unary(`${ECHO}/Unary`, { message: 'hello from node' }));
  assert.equal(reply.message, 'hello from node');
  assert.equal(client.transport(), 'quic');
  const stats = await server.stats();
  assert.equal(stats.quic, 1);
  assert.equal(stats.tcp, 0);
});

test('JSON out leaves default fields out unless emitDefaults', async () => {
  const plain = await Client.connect(server.uri, { ca: server.ca });
  try {
    const reply = await within('unary', plain.unary(`${ECHO}/Unary`, { message: 'm' }));
    assert.equal(reply.index, undefined);
    assert.equal(reply.message, 'm');
  } finally {
    plain.close();
  }
  const reply = await within('unary', client.unary(`${ECHO}/Unary`, { message: 'm' }));
  assert.equal(reply.index, 0);
  assert.equal(reply.earlyData, false);
});

test('64-bit integers come as strings, bytes as base64', async () => {
  const reply = await within('unary', client.unary(`${ECHO}/Unary`, { responseSize: 3 }, { timeoutMs: 5000 }));
  assert.equal(typeof reply.timeoutMs, 'string'); // uint64
  assert.ok(Number(reply.timeoutMs) > 4000 && Number(reply.timeoutMs) <= 5000, reply.timeoutMs);
  assert.equal(reply.payload, Buffer.from([0xab, 0xab, 0xab]).toString('base64'));
});

test('messages as bytes: a Uint8Array in, a Buffer out with raw', async () => {
  // EchoRequest { message: "hi" }: field 1, length-delimited.
  const request = new Uint8Array([0x0a, 0x02, 0x68, 0x69]);
  const reply = await within('raw unary', client.unary(`${ECHO}/Unary`, request, { raw: true }));
  assert.ok(Buffer.isBuffer(reply));
  // EchoReply's field 1 (message) comes first: "hi".
  assert.deepEqual([...reply.subarray(0, 4)], [0x0a, 0x02, 0x68, 0x69]);
  // Bytes in, JSON out.
  const json = await within('bytes in', client.unary(`${ECHO}/Unary`, request));
  assert.equal(json.message, 'hi');
});

test('server streaming: an async iterable of the replies', async () => {
  const replies = [];
  for await (const reply of client.serverStream(`${ECHO}/ServerStream`, { message: 's', responseCount: 3 })) {
    replies.push(reply.index);
  }
  assert.deepEqual(replies, [0, 1, 2]);
});

test('client streaming: the requests from an async iterable', async () => {
  async function* requests() {
    for (const message of ['a', 'b', 'c']) yield { message };
  }
  const reply = await within('client stream', client.clientStream(`${ECHO}/ClientStream`, requests()));
  assert.equal(reply.message, 'abc');
  assert.equal(reply.index, 3);
  // A plain array works too.
  const again = await within('client stream', client.clientStream(`${ECHO}/ClientStream`, [{ message: 'x' }]));
  assert.equal(again.message, 'x');
});

test('bidirectional: write, read the echo, write again, end', async () => {
  const call = client.bidi(`${ECHO}/Bidi`);
  const replies = call[Symbol.asyncIterator]();
  for (const message of ['one', 'two', 'three']) {
    await within('write', call.write({ message }));
    const { value, done } = await within('read', replies.next());
    assert.equal(done, false);
    assert.equal(value.message, message);
  }
  call.end();
  const { done } = await within('end', replies.next());
  assert.equal(done, true);
});

test('metadata both ways: x-echo-* comes back in the response headers, -bin as bytes', async () => {
  let headers;
  const reply = await within('unary', client.unary(`${ECHO}/Unary`, { message: 'md' }, {
    metadata: { 'x-echo-color': 'blue', 'x-echo-bin': new Uint8Array([0, 1, 2]) },
    onMetadata: (metadata) => { headers = metadata; },
  }));
  assert.equal(reply.message, 'md');
  assert.deepEqual(headers.get('x-echo-color'), ['blue']);
  assert.deepEqual([...headers.get('x-echo-bin')[0]], [0, 1, 2]);
});

test('priority: the declared one, and a per-call override, reach the server', async () => {
  const urgent = await within('urgent', client.unary(`${ECHO}/Urgent`, { message: 'u' }));
  assert.equal(urgent.priority, 'critical'); // option (quicrpc.priority) = CRITICAL
  const bulk = await within('bulk', client.unary(`${ECHO}/Unary`, { message: 'b' }, { priority: 'bulk' }));
  assert.equal(bulk.priority, 'bulk');
  const high = await within('high', client.unary(`${ECHO}/Urgent`, { message: 'h' }, { priority: 'high' }));
  assert.equal(high.priority, 'high');
});

test('1,000 calls in flight from one client', async () => {
  const calls = 1000;
  // Each call waits at the server long enough for all of them to be seen there at once.
  const pending = Array.from({ length: calls }, (_, i) => client.unary(`${ECHO}/Unary`, { message: `m${i}`, delayMs: 4000 }));
  const peak = await server.until('1,000 calls under way at the server', (stats) => stats.calls >= calls);
  assert.equal(peak.quic, 1, 'all on one connection');
  const replies = await within('1,000 replies', Promise.all(pending));
  replies.forEach((reply, i) => assert.equal(reply.message, `m${i}`));
});
