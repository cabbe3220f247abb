// Backpressure both ways: a writer faster than the server reads waits (write() stays
// pending), and a server stream that JavaScript does not read holds the server back, with
// what sits in between bounded by the binding's 16-deep buffers and QUIC's flow control.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Client } = require('..');
const { EchoServer, within } = require('./support');

const ECHO = 'quicrpc.testing.Echo';
const KIB = 1024;
const MIB = 1024 * KIB;
/** How long a write must stay pending, or the producer stay below its bound, to count. */
const WATCH_MS = 1000;

let server;
let client;

before(async () => {
  server = await EchoServer.start();
  client = await Client.connect(server.uri, { ca: server.ca, fallback: 'quic' });
});

after(async () => {
  client.close();
  await server.stop();
});

/** Resolves to `true` if `promise` settles within `ms`, else `false` (it goes on). */
function settlesWithin(promise, ms) {
  let timer;
  const late = new Promise((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  return Promise.race([promise.then(() => true), late]).finally(() => clearTimeout(timer));
}

test('a server stream that JavaScript does not read holds the server back', async (t) => {
  const REPLY = 64 * KIB;
  // What may sit between the server's handler and a reader that stopped: the handler's
  // channel (4 replies), quinn's send buffer and the client's stream receive window
  // (1.25 MB): 4 MiB, as tests/tests/abuse.rs bounds it for a Rust client; plus the
  // binding's 16 events, the one its task holds, and the batch JavaScript took.
  const BOUND = 4 * MIB + 18 * REPLY;
  // 128 MiB on offer: far past the bound.
  const replies = client.serverStream(`${ECHO}/ServerStream`, { responseCount: 2048, responseSize: REPLY })[Symbol.asyncIterator]();
  try {
    const first = await within('first reply', replies.next());
    assert.equal(first.done, false);
    await server.until('the server fills the window', (stats) => stats.produced >= MIB);
    // Watch the producer for a while: flow control must hold it.
    let most = 0;
    const watching = Date.now();
    while (Date.now() - watching < WATCH_MS) {
      most = Math.max(most, (await server.stats()).produced);
      assert.ok(most <= BOUND, `the server got ${most} bytes out for a reader that reads nothing (bound ${BOUND})`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    t.diagnostic(`unread stream: the server got ${most} bytes out, then flow control held it`);
    // Reading again lets it go on.
    for (let i = 0; i < 100; i++) {
      const next = await within('more replies', replies.next());
      assert.equal(next.done, false);
    }
    await server.until('the server goes on', (stats) => stats.produced > most);
  } finally {
    await replies.return(); // cancels the call
  }
});

test('a writer faster than the server reads waits for it', async (t) => {
  const REQUEST = 16 * KIB;
  const REPLY = 64 * KIB;
  // The server echoes each request with a 64 KiB reply, which this test does not read:
  // the replies fill the binding's 16 events and the client's stream receive window, the
  // handler stops reading requests, and they fill the server's stream receive window
  // (1.25 MB, ~76 requests), then the binding's 16-deep request buffer. About 140
  // requests in all; without a bound, all 4096 (64 MiB) would be taken at once.
  const BOUND = 300;
  const call = client.bidi(`${ECHO}/Bidi`);
  const request = { message: 'w', payload: Buffer.alloc(REQUEST, 0xcd).toString('base64'), responseSize: REPLY };
  let written = 0;
  let stalled = null;
  for (; written < 4096; written++) {
    const write = call.write(request);
    if (!(await settlesWithin(write, WATCH_MS))) {
      stalled = write;
      break;
    }
  }
  assert.ok(stalled, `all ${written} writes were taken at once: no backpressure`);
  assert.ok(written <= BOUND, `${written} requests were taken before the writer had to wait (bound ${BOUND})`);
  t.diagnostic(`unread replies: ${written} requests taken, then write() waited`);
  // Reading the replies lets the server read on, and the pending write through.
  const replies = call[Symbol.asyncIterator]();
  try {
    let read = 0;
    const wrote = stalled.then(() => true);
    while (!(await settlesWithin(wrote, 0))) {
      const next = await within('a reply', replies.next());
      assert.equal(next.done, false);
      read++;
      assert.ok(read <= written + 1, 'the pending write went through once its replies were read');
    }
  } finally {
    call.end();
    await replies.return(); // cancels the call
  }
});
