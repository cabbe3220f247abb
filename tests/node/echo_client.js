// A gRPC client that no one here wrote: Node.js @grpc/grpc-js against quicrpc's TCP side.
//
// Loads proto/testing/echo.proto at run time with @grpc/proto-loader (the same .proto the Rust
// side is built from), connects over TLS trusting the given CA, and runs one case per call
// kind plus a status, metadata and a deadline. Prints `PASS <case>` per case; any failure
// exits non-zero.
//
//   node tests/node/echo_client.js --target localhost:PORT --ca ca.pem
'use strict';

const fs = require('fs');
const path = require('path');
const assert = require('assert');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

function arg(name) {
  const i = process.argv.indexOf(name);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error(`missing ${name}`);
  return process.argv[i + 1];
}

const deadline = (ms) => new Date(Date.now() + ms);

function unary(client, method, request, options = {}) {
  return new Promise((resolve, reject) => {
    const metadata = options.metadata || new grpc.Metadata();
    const call = client[method](request, metadata, { deadline: deadline(options.timeoutMs || 10000) }, (err, reply) =>
      err ? reject(err) : resolve({ reply, call }));
    call.on('metadata', (m) => { call.initialMetadata = m; });
  });
}

function collect(stream) {
  return new Promise((resolve, reject) => {
    const replies = [];
    stream.on('data', (r) => replies.push(r));
    stream.on('error', reject);
    stream.on('end', () => resolve(replies));
  });
}

async function main() {
  const root = path.join(__dirname, '..', '..', 'proto');
  const definition = protoLoader.loadSync('testing/echo.proto', {
    includeDirs: [root], keepCase: true, longs: Number, defaults: true,
  });
  const Echo = grpc.loadPackageDefinition(definition).quicrpc.testing.Echo;
  const creds = grpc.credentials.createSsl(fs.readFileSync(arg('--ca')));
  const client = new Echo(arg('--target'), creds);

  let { reply } = await unary(client, 'Unary', { message: 'hello from node' });
  assert.strictEqual(reply.message, 'hello from node');
  console.log('PASS unary');

  let replies = await collect(client.ServerStream({ message: 's', response_count: 3 }, { deadline: deadline(10000) }));
  assert.deepStrictEqual(replies.map((r) => r.index), [0, 1, 2]);
  console.log('PASS server_streaming');

  reply = await new Promise((resolve, reject) => {
    const call = client.ClientStream({ deadline: deadline(10000) }, (err, r) => (err ? reject(err) : resolve(r)));
    for (const m of ['a', 'b', 'c']) call.write({ message: m });
    call.end();
  });
  assert.strictEqual(reply.message, 'abc');
  assert.strictEqual(reply.index, 3);
  console.log('PASS client_streaming');

  const bidi = client.Bidi({ deadline: deadline(10000) });
  const bidiReplies = collect(bidi);
  for (const m of ['x', 'y', 'z']) bidi.write({ message: m });
  bidi.end();
  replies = await bidiReplies;
  assert.deepStrictEqual(replies.map((r) => r.message), ['x', 'y', 'z']);
  console.log('PASS bidi_streaming');

  await assert.rejects(unary(client, 'Unary', { fail_code: 5, fail_message: 'no such agent' }), (err) => {
    assert.strictEqual(err.code, grpc.status.NOT_FOUND);
    assert.strictEqual(err.details, 'no such agent');
    return true;
  });
  console.log('PASS status_with_message');

  const metadata = new grpc.Metadata();
  metadata.set('x-echo-colour', 'blue');
  metadata.set('x-echo-bin', Buffer.from([0, 1, 255]));
  const { call } = await unary(client, 'Unary', { message: 'm' }, { metadata });
  assert.deepStrictEqual(call.initialMetadata.get('x-echo-colour'), ['blue']);
  assert.deepStrictEqual(call.initialMetadata.get('x-echo-bin'), [Buffer.from([0, 1, 255])]);
  console.log('PASS metadata');

  await assert.rejects(unary(client, 'Hang', { message: 'wait' }, { timeoutMs: 200 }), (err) => {
    assert.strictEqual(err.code, grpc.status.DEADLINE_EXCEEDED);
    return true;
  });
  console.log('PASS deadline');
  client.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
