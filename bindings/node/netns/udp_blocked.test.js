// The Node.js client where UDP is dropped on the way to the server: run by
// tests/tests/node_binding.rs, which starts the Echo test server in a network namespace of
// its own behind an nftables rule that drops UDP, and passes its address here
// (QUICRPC_NETNS_URI, QUICRPC_NETNS_CA). Not part of `npm test`: it needs that setup (root).
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { Client, status } = require('..');
const { within } = require('../test/support');

const ECHO = 'quicrpc.testing.Echo';
const URI = process.env.QUICRPC_NETNS_URI;
const CA = process.env.QUICRPC_NETNS_CA;

function options(fallback) {
  assert.ok(URI && CA, 'QUICRPC_NETNS_URI and QUICRPC_NETNS_CA name the server in the namespace');
  return { ca: CA, serverName: 'localhost', fallback, connectTimeoutMs: 1000 };
}

test("fallback: 'auto' reaches the server over TCP, and calls work", async () => {
  const client = await within('connect', Client.connect(URI, options('auto')));
  try {
    assert.equal(client.transport(), 'tcp');
    const reply = await within('unary', client.unary(`${ECHO}/Unary`, { message: 'over tcp' }));
    assert.equal(reply.message, 'over tcp');
    const replies = [];
    for await (const r of client.serverStream(`${ECHO}/ServerStream`, { message: 's', responseCount: 3 })) {
      replies.push(r.message);
    }
    assert.deepEqual(replies, ['s', 's', 's']);
    const call = client.bidi(`${ECHO}/Bidi`);
    await call.write({ message: 'b' });
    call.end();
    const echoed = [];
    for await (const r of call) echoed.push(r.message);
    assert.deepEqual(echoed, ['b']);
    assert.equal(client.transport(), 'tcp');
  } finally {
    client.close();
  }
});

test("fallback: 'quic' cannot connect: UDP really is dropped", async () => {
  await assert.rejects(within('connect', Client.connect(URI, options('quic'))), (e) => {
    assert.equal(e.code, status.UNAVAILABLE, e.message);
    return true;
  });
});
