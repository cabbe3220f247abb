// Failures: statuses with details and trailers, deadlines, the message size limit, and bad
// input, each a clear error (an Error with a numeric code), never a crash of the process.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Client, status } = require('..');
const { EchoServer, within } = require('./support');

const ECHO = 'quicrpc.testing.Echo';
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

/** The error `promise` rejects with (it must reject). */
async function failure(what, promise) {
  try {
    await within(what, promise);
  } catch (e) {
    return e;
  }
  assert.fail(`${what}: expected a failure`);
}

test('a status with a message, details and trailing metadata', async () => {
  const details = Buffer.from('details, as bytes');
  const e = await failure('failing call', client.unary(`${ECHO}/Unary`, {
    failCode: status.NOT_FOUND, failMessage: 'told to fail', failDetails: details.toString('base64'),
  }));
  assert.ok(e instanceof Error);
  assert.equal(e.code, status.NOT_FOUND);
  assert.equal(e.details, 'told to fail');
  assert.equal(e.message, '5 NOT_FOUND: told to fail');
  assert.deepEqual(e.metadata.get('x-failure'), ['yes']);
  assert.deepEqual(e.metadata.get('grpc-status-details-bin')[0], details);
});

test('a status in the middle of a server stream, after the replies before it', async () => {
  const seen = [];
  const e = await failure('stream', (async () => {
    for await (const reply of client.serverStream(`${ECHO}/ServerStream`, {
      responseCount: 5, failCode: status.ABORTED, failMessage: 'stop', failAfter: 2,
    })) {
      seen.push(reply.index || 0);
    }
  })());
  assert.equal(e.code, status.ABORTED);
  assert.deepEqual(seen, [0, 1]);
});

test('a deadline: DEADLINE_EXCEEDED, and the server was told it', async () => {
  const started = Date.now();
  const e = await failure('hang', client.unary(`${ECHO}/Hang`, {}, { timeoutMs: 200 }));
  assert.equal(e.code, status.DEADLINE_EXCEEDED);
  assert.ok(Date.now() - started < 5000);
  await server.nextEvent('HangStarted');
  await server.nextEvent('HangDropped');
});

test('a request over the server\'s 4 MiB limit: RESOURCE_EXHAUSTED', async () => {
  const payload = new Uint8Array(5 * 1024 * 1024);
  const e = await failure('big request', client.unary(`${ECHO}/Unary`, { payload }));
  assert.equal(e.code, status.RESOURCE_EXHAUSTED);
});

test('a response over the client\'s 4 MiB limit: RESOURCE_EXHAUSTED', async () => {
  const e = await failure('big response', client.unary(`${ECHO}/Unary`, { responseSize: 5 * 1024 * 1024 }));
  assert.equal(e.code, status.RESOURCE_EXHAUSTED);
});

test('a wrong method name: UNIMPLEMENTED, with the close name suggested', async () => {
  const e = await failure('typo', client.unary(`${ECHO}/Unray`, {}));
  assert.equal(e.code, status.UNIMPLEMENTED);
  assert.match(e.details, /has no method `Unray`; did you mean `Unary`\?/);
  const service = await failure('no service', client.unary('quicrpc.testing.Ecko/Unary', {}));
  assert.equal(service.code, status.UNIMPLEMENTED);
  assert.match(service.details, /did you mean `quicrpc.testing.Echo`\?/);
  const path = await failure('no path', client.unary('Unary', {}));
  assert.equal(path.code, status.INVALID_ARGUMENT);
  assert.match(path.details, /expected package.Service\/Method/);
});

test('JSON that does not fit names the field', async () => {
  const e = await failure('bad field', client.unary(`${ECHO}/Unary`, { responseSize: 'lots' }));
  assert.equal(e.code, status.INVALID_ARGUMENT);
  assert.match(e.details, /does not fit quicrpc.testing.EchoRequest: field `responseSize`/);
  const unknown = await failure('unknown field', client.unary(`${ECHO}/Unary`, { colour: 'red' }));
  assert.equal(unknown.code, status.INVALID_ARGUMENT);
  assert.match(unknown.details, /colour/);
  // In a stream of requests: the call ends with the error, naming the field.
  const call = client.bidi(`${ECHO}/Bidi`);
  await call.write({ message: 'fine' });
  await call.write({ delayMs: -1 });
  const bidi = await failure('bad request in a stream', (async () => {
    for await (const reply of call) assert.equal(reply.message, 'fine');
  })());
  assert.equal(bidi.code, status.INVALID_ARGUMENT);
  assert.match(bidi.details, /field `delayMs`/);
});

test('bad values: a message that is no object, a priority, metadata, a timeout', async () => {
  for (const [what, call, pattern] of [
    ['number message', () => client.unary(`${ECHO}/Unary`, 42), /a message must be a plain object/],
    ['array message', () => client.unary(`${ECHO}/Unary`, [1]), /not an array/],
    ['priority', () => client.unary(`${ECHO}/Unary`, {}, { priority: 'urgent' }), /unknown priority "urgent"/],
    ['metadata key', () => client.unary(`${ECHO}/Unary`, {}, { metadata: { 'bad key': 'v' } }), /not a valid metadata key/],
    ['binary metadata', () => client.unary(`${ECHO}/Unary`, {}, { metadata: { 'x-bin': 'text' } }), /-bin key takes a Buffer/],
    ['timeout', () => client.unary(`${ECHO}/Unary`, {}, { timeoutMs: -5 }), /timeoutMs/],
  ]) {
    const e = await failure(what, call());
    assert.equal(e.code, status.INVALID_ARGUMENT, what);
    assert.match(e.details, pattern, what);
  }
  // Still alive and well.
  assert.equal((await client.unary(`${ECHO}/Unary`, { message: 'ok' })).message, 'ok');
});

test('connecting: a bad PEM, a bad URI, a bad policy, the wrong CA, no server', async () => {
  const pem = await failure('bad PEM', Client.connect(server.uri, { ca: 'not a certificate' }));
  assert.equal(pem.code, status.INVALID_ARGUMENT);
  assert.match(pem.details, /ca: not a PEM certificate/);
  const broken = '-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n';
  const garbled = await failure('garbled PEM', Client.connect(server.uri, { ca: broken }));
  assert.equal(garbled.code, status.INVALID_ARGUMENT);
  const uri = await failure('bad URI', Client.connect(`http://localhost:${server.port}`, { ca: server.ca }));
  assert.equal(uri.code, status.INVALID_ARGUMENT);
  assert.match(uri.details, /https:\/\/HOST:PORT/);
  const policy = await failure('bad policy', Client.connect(server.uri, { ca: server.ca, fallback: 'udp' }));
  assert.match(policy.details, /unknown policy "udp"/);
  // A well-formed certificate that did not sign the server's.
  const other = await EchoServer.start();
  try {
    const wrongCa = await failure('wrong CA', Client.connect(server.uri, { ca: other.ca, fallback: 'quic', connectTimeoutMs: 2000 }));
    assert.equal(wrongCa.code, status.UNAVAILABLE);
    assert.match(wrongCa.details, /certificate|UnknownIssuer/i);
  } finally {
    await other.stop();
  }
  const missing = await failure('proto file', Client.connect(server.uri, { ca: server.ca, protoFiles: ['nowhere.proto'] }));
  assert.equal(missing.code, status.INVALID_ARGUMENT);
  assert.match(missing.details, /protoFiles nowhere.proto: no such file/);
});
