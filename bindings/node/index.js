// quicrpc's client for Node.js: the public API over the native addon (binding.js, built by
// `npm run build`). Every call runs in Rust on one Tokio runtime per process; this file turns
// JavaScript values into what the addon takes, reads its events, and shapes failures as
// @grpc/grpc-js does (an Error with a numeric `code`, `details` and `metadata`).
'use strict';

const { NativeClient } = require('./binding.js');

/** gRPC status codes by name, as @grpc/grpc-js's `status`. */
const status = Object.freeze({
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
});

const STATUS_NAMES = Object.fromEntries(Object.entries(status).map(([name, code]) => [code, name]));

/**
 * Metadata: keys (lowercase) with one or more values each, strings for ordinary keys and
 * Buffers for keys ending in `-bin`; the same methods as @grpc/grpc-js's Metadata.
 */
class Metadata {
  constructor() {
    this.map = new Map();
  }

  /** Metadata from a plain object (`{ key: value | value[] }`), or a Metadata as it is. */
  static from(init) {
    if (init instanceof Metadata) return init;
    const metadata = new Metadata();
    if (init == null) return metadata;
    if (typeof init !== 'object') throw invalid(`metadata must be an object or a Metadata, not ${typeof init}`);
    for (const [key, value] of Object.entries(init)) {
      for (const one of Array.isArray(value) ? value : [value]) metadata.add(key, one);
    }
    return metadata;
  }

  static fromEntries(entries) {
    const metadata = new Metadata();
    for (const { key, value } of entries || []) metadata.add(key, value);
    return metadata;
  }

  set(key, value) {
    this.map.set(key.toLowerCase(), [value]);
  }

  add(key, value) {
    const values = this.map.get(key.toLowerCase());
    if (values) values.push(value);
    else this.map.set(key.toLowerCase(), [value]);
  }

  remove(key) {
    this.map.delete(key.toLowerCase());
  }

  /** Every value of `key`, in order; `[]` if none. */
  get(key) {
    return [...(this.map.get(key.toLowerCase()) || [])];
  }

  /** The first value of each key. */
  getMap() {
    return Object.fromEntries([...this.map].map(([key, values]) => [key, values[0]]));
  }

  toJSON() {
    return Object.fromEntries(this.map);
  }

  /** The entries the addon takes. */
  entries() {
    const entries = [];
    for (const [key, values] of this.map) {
      for (const value of values) {
        if (typeof value === 'string') entries.push({ key, value });
        else if (value instanceof Uint8Array) entries.push({ key, value: asBuffer(value) });
        else throw invalid(`metadata ${JSON.stringify(key)}: a value must be a string or (for -bin keys) a Uint8Array`);
      }
    }
    return entries;
  }
}

/** The Error a failed call rejects with: `code`, `details` and `metadata`, as @grpc/grpc-js's ServiceError. */
function serviceError({ code, details, metadata }) {
  const error = new Error(`${code} ${STATUS_NAMES[code] || 'UNKNOWN'}: ${details}`);
  error.code = code;
  error.details = details;
  error.metadata = metadata instanceof Metadata ? metadata : Metadata.fromEntries(metadata);
  return error;
}

function invalid(details) {
  return serviceError({ code: status.INVALID_ARGUMENT, details, metadata: new Metadata() });
}

function asBuffer(bytes) {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * A message as the addon takes it: bytes as they are (the caller encoded them), an object
 * as JSON text (proto3's mapping; BigInts become strings, Uint8Arrays base64).
 */
function toWire(message) {
  if (message instanceof Uint8Array) return asBuffer(message);
  if (message === null || typeof message !== 'object' || Array.isArray(message)) {
    throw invalid(`a message must be a plain object (JSON mapping) or a Uint8Array, not ${describe(message)}`);
  }
  return JSON.stringify(message, function (key, value) {
    const original = this[key];
    if (original instanceof Uint8Array) return asBuffer(original).toString('base64');
    if (typeof value === 'bigint') return value.toString();
    return value;
  });
}

function describe(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value;
}

/** CallOptions as the addon takes them. */
function nativeOptions(options) {
  if (options == null) return {};
  if (typeof options !== 'object') throw invalid(`call options must be an object, not ${typeof options}`);
  const native = {};
  if (options.metadata != null) native.metadata = Metadata.from(options.metadata).entries();
  if (options.timeoutMs != null) {
    if (typeof options.timeoutMs !== 'number') throw invalid('timeoutMs must be a number of milliseconds');
    native.timeoutMs = options.timeoutMs;
  }
  if (options.priority != null) native.priority = String(options.priority);
  if (options.raw) native.raw = true;
  return native;
}

/** Cancels `call` when `signal` aborts; returns what stops watching. */
function watch(call, signal) {
  if (signal == null) return () => {};
  if (signal.aborted) {
    call.cancel();
    return () => {};
  }
  const onAbort = () => call.cancel();
  signal.addEventListener('abort', onAbort, { once: true });
  return () => signal.removeEventListener('abort', onAbort);
}

/** Reads one call's events: headers, messages, and the status last. */
class Reader {
  constructor(call, options) {
    this.call = call;
    this.options = options || {};
    this.queue = [];
    this.done = false;
  }

  /** The next response message, or `null` after an OK status; throws a failed status. */
  async read() {
    while (!this.done) {
      if (this.queue.length === 0) {
        const batch = await this.call.next();
        if (batch.length === 0) {
          this.done = true;
          throw serviceError({ code: status.INTERNAL, details: 'the call ended without a status', metadata: [] });
        }
        this.queue = batch;
      }
      const event = this.queue.shift();
      if (event.headers != null) {
        if (this.options.onMetadata) this.options.onMetadata(Metadata.fromEntries(event.headers));
      } else if (event.message != null) {
        return typeof event.message === 'string' ? JSON.parse(event.message) : event.message;
      } else if (event.status != null) {
        this.done = true;
        if (event.status.code !== status.OK) throw serviceError(event.status);
        if (this.options.onTrailers) this.options.onTrailers(Metadata.fromEntries(event.status.metadata));
      }
    }
    return null;
  }

  /** The one response message of a unary or client-streaming call, after its status. */
  async single() {
    const message = await this.read();
    if (message === null) {
      throw serviceError({ code: status.INTERNAL, details: 'the server sent no response message', metadata: [] });
    }
    if ((await this.read()) !== null) {
      throw serviceError({ code: status.INTERNAL, details: 'the server sent more than one response message', metadata: [] });
    }
    return message;
  }
}

/** The responses of a server-streaming or bidirectional call, as an async iterable. */
class ResponseStream {
  constructor(call, options, stopWatching) {
    this.native = call;
    this.reader = new Reader(call, options);
    this.stopWatching = stopWatching;
  }

  async *[Symbol.asyncIterator]() {
    try {
      for (;;) {
        const message = await this.reader.read();
        if (message === null) return;
        yield message;
      }
    } finally {
      // A loop that stopped early (break, throw) cancels the call: the server sees it.
      if (!this.reader.done) this.native.cancel();
      this.stopWatching();
    }
  }

  /** Cancels the call: reading ends with CANCELLED, and the server sees the cancellation. */
  cancel() {
    this.native.cancel();
  }
}

/** A bidirectional call: `write()` and `end()` the requests, iterate over the responses. */
class BidiCall extends ResponseStream {
  /** Sends a request message; waits while the call has 16 unsent (backpressure). */
  async write(message) {
    if (!(await this.native.write(toWire(message)))) {
      throw serviceError({
        code: status.CANCELLED,
        details: 'the call has ended (or end() was called); reading it gives its status',
        metadata: [],
      });
    }
  }

  /** Ends the requests. */
  end() {
    this.native.end();
  }
}

/** A client of one quicrpc (or any gRPC) server, over QUIC, falling back to TCP. */
class Client {
  constructor(native) {
    this.native = native;
  }

  /**
   * Connects to `uri` (`https://host:port`). Options: `ca` (PEM text), `protoFiles` and
   * `importPaths` (default: the server's reflection), `fallback` ('auto' | 'quic' | 'tcp'),
   * `serverName`, `connectTimeoutMs`, `emitDefaults`.
   */
  static async connect(uri, options) {
    let native;
    try {
      native = new NativeClient(String(uri), options == null ? undefined : options);
    } catch (e) {
      throw invalid(e.message);
    }
    const failure = await native.connect();
    if (failure != null) {
      native.close();
      throw serviceError(failure);
    }
    return new Client(native);
  }

  /** One request, one response. */
  async unary(method, message, options) {
    const call = this.start(method, toWire(message), options);
    const stopWatching = watch(call, options && options.signal);
    try {
      return await new Reader(call, options).single();
    } finally {
      stopWatching();
    }
  }

  /** One request, the responses as an async iterable. */
  serverStream(method, message, options) {
    const call = this.start(method, toWire(message), options);
    return new ResponseStream(call, options, watch(call, options && options.signal));
  }

  /** The requests from an (async) iterable, one response. */
  async clientStream(method, requests, options) {
    if (requests == null || (typeof requests[Symbol.asyncIterator] !== 'function' && typeof requests[Symbol.iterator] !== 'function')) {
      throw invalid('clientStream takes the requests as an iterable or async iterable');
    }
    const call = this.start(method, null, options);
    const stopWatching = watch(call, options && options.signal);
    let sourceFailed = null;
    const pump = (async () => {
      try {
        for await (const message of requests) {
          if (!(await call.write(toWire(message)))) return;
        }
        call.end();
      } catch (e) {
        sourceFailed = e;
        call.cancel();
      }
    })();
    try {
      const reply = await new Reader(call, options).single();
      await pump;
      return reply;
    } catch (e) {
      await pump;
      throw sourceFailed || e;
    } finally {
      stopWatching();
    }
  }

  /** A bidirectional call: write requests to it and iterate over its responses. */
  bidi(method, options) {
    const call = this.start(method, null, options);
    return new BidiCall(call, options, watch(call, options && options.signal));
  }

  /** The transport new calls use: 'quic', 'tcp' or 'h3' ('closed' after close()). */
  transport() {
    return this.native.transport();
  }

  /** Cancels the calls under way and lets the connection go. */
  close() {
    this.native.close();
  }

  start(method, request, options) {
    if (typeof method !== 'string') throw invalid('the method must be a string: package.Service/Method');
    const native = nativeOptions(options);
    // An aborted signal stops the call before it starts, rather than racing it.
    if (options && options.signal && options.signal.aborted) {
      throw serviceError({ code: status.CANCELLED, details: 'cancelled by the client: the signal was aborted', metadata: [] });
    }
    return this.native.start(method, request, native);
  }
}

module.exports = { Client, Metadata, status };
