// 0-RTT from Node: a new client in the same process resumes the TLS session of an earlier
// one, and sends a call to a replay-safe method (idempotency_level NO_SIDE_EFFECTS, read
// from the .proto) as early data; a call to any other method waits for the handshake.
//
// The client reaches the server through a UDP relay that delays what the server sends by
// DELAY_MS: a resumed handshake then stays under way for two delays (1 RTT), the window in
// which early data goes. On bare loopback the handshake is over in well under a millisecond,
// before JavaScript has made its call.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const dgram = require('node:dgram');
const path = require('node:path');
const { Client } = require('..');
const { EchoServer, within, ROOT } = require('./support');

const ECHO = 'quicrpc.testing.Echo';
const DELAY_MS = 250;

let server;
let relay;

/**
 * A UDP relay on loopback to `port`: each client gets its own socket towards the server,
 * and what the server sends back reaches the client `delayMs` later.
 */
async function startRelay(port, delayMs) {
  const front = dgram.createSocket('udp4');
  const upstreams = new Map();
  const timers = new Set();
  front.on('message', (packet, from) => {
    const key = `${from.address}:${from.port}`;
    let upstream = upstreams.get(key);
    if (!upstream) {
      upstream = dgram.createSocket('udp4');
      upstream.on('message', (reply) => {
        const timer = setTimeout(() => {
          timers.delete(timer);
          front.send(reply, from.port, from.address);
        }, delayMs);
        timers.add(timer);
      });
      upstream.bind(0, '127.0.0.1');
      upstreams.set(key, upstream);
    }
    upstream.send(packet, port, '127.0.0.1');
  });
  await new Promise((resolve) => front.bind(0, '127.0.0.1', resolve));
  return {
    port: front.address().port,
    close() {
      for (const timer of timers) clearTimeout(timer);
      for (const upstream of upstreams.values()) upstream.close();
      front.close();
    },
  };
}

/** A client through the relay, with message types from the .proto (no reflection call). */
function connect() {
  return within('connect', Client.connect(`https://127.0.0.1:${relay.port}`, {
    ca: server.ca,
    serverName: 'localhost',
    fallback: 'quic',
    protoFiles: ['testing/echo.proto'],
    importPaths: [path.join(ROOT, 'proto')],
    emitDefaults: true,
  }));
}

before(async () => {
  server = await EchoServer.start();
  relay = await startRelay(server.port, DELAY_MS);
  // A full handshake and a call: the process now holds a session ticket for the server
  // (the ticket comes before the first response).
  const first = await connect();
  try {
    const reply = await within('first call', first.unary(`${ECHO}/Lookup`, { message: 'warm up' }));
    assert.equal(reply.earlyData, false);
  } finally {
    first.close();
  }
});

after(async () => {
  relay.close();
  await server.stop();
});

test('a resumed client sends a call to a NO_SIDE_EFFECTS method as 0-RTT early data', async () => {
  const client = await connect();
  try {
    const reply = await within('early call', client.unary(`${ECHO}/Lookup`, { message: 'early' }));
    assert.equal(reply.message, 'early');
    assert.equal(reply.earlyData, true, 'the server ran it from early data');
    // Once the handshake is over, calls go as usual.
    const later = await within('later call', client.unary(`${ECHO}/Lookup`, { message: 'later' }));
    assert.equal(later.earlyData, false);
  } finally {
    client.close();
  }
});

test('a server-streaming NO_SIDE_EFFECTS method goes as early data too', async () => {
  const client = await connect();
  try {
    const replies = [];
    for await (const reply of client.serverStream(`${ECHO}/Fetch`, { message: 'f', responseCount: 2 })) {
      replies.push(reply);
    }
    assert.equal(replies.length, 2);
    assert.ok(replies.every((reply) => reply.earlyData), JSON.stringify(replies));
  } finally {
    client.close();
  }
});

test('a call to a method with side effects waits for the handshake', async () => {
  const client = await connect();
  try {
    const reply = await within('unary', client.unary(`${ECHO}/Unary`, { message: 'not early' }));
    assert.equal(reply.message, 'not early');
    assert.equal(reply.earlyData, false, 'never run from early data');
  } finally {
    client.close();
  }
});
