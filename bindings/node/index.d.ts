// Types of the public API (index.js). The options and metadata entries the addon takes are
// generated from the Rust code by napi-rs, in binding.d.ts; this file adds what index.js
// builds on them.
import type { CallOptions as NativeCallOptions, ConnectOptions } from './binding'

export type { ConnectOptions }

/** gRPC status codes by name. */
export declare const status: {
  readonly OK: 0
  readonly CANCELLED: 1
  readonly UNKNOWN: 2
  readonly INVALID_ARGUMENT: 3
  readonly DEADLINE_EXCEEDED: 4
  readonly NOT_FOUND: 5
  readonly ALREADY_EXISTS: 6
  readonly PERMISSION_DENIED: 7
  readonly RESOURCE_EXHAUSTED: 8
  readonly FAILED_PRECONDITION: 9
  readonly ABORTED: 10
  readonly OUT_OF_RANGE: 11
  readonly UNIMPLEMENTED: 12
  readonly INTERNAL: 13
  readonly UNAVAILABLE: 14
  readonly DATA_LOSS: 15
  readonly UNAUTHENTICATED: 16
}

export type MetadataValue = string | Buffer

/** Keys (lowercase) with their values: strings, or Buffers for keys ending in `-bin`. */
export declare class Metadata {
  static from(init?: Metadata | Record<string, MetadataValue | Uint8Array | Array<MetadataValue | Uint8Array>>): Metadata
  set(key: string, value: MetadataValue | Uint8Array): void
  add(key: string, value: MetadataValue | Uint8Array): void
  remove(key: string): void
  get(key: string): MetadataValue[]
  getMap(): Record<string, MetadataValue>
  toJSON(): Record<string, MetadataValue[]>
}

/** What a failed call rejects with, shaped as @grpc/grpc-js's ServiceError. */
export interface ServiceError extends Error {
  code: number
  details: string
  /** The trailers, with `grpc-status-details-bin` when the status has details. */
  metadata: Metadata
}

/** A message: an object in protobuf's JSON mapping, or its encoding. */
export type Message = Record<string, unknown> | Uint8Array

export interface CallOptions extends Omit<NativeCallOptions, 'metadata'> {
  metadata?: Metadata | Record<string, MetadataValue | Uint8Array | Array<MetadataValue | Uint8Array>>
  /** Cancels the call when aborted: it rejects with CANCELLED, and the server sees it. */
  signal?: AbortSignal
  /** Called with the response headers. */
  onMetadata?: (metadata: Metadata) => void
  /** Called with the trailers of an OK status. */
  onTrailers?: (metadata: Metadata) => void
}

/** The responses of a server-streaming or bidirectional call. */
export declare class ResponseStream<T = any> implements AsyncIterable<T> {
  [Symbol.asyncIterator](): AsyncIterator<T>
  cancel(): void
}

export declare class BidiCall<T = any> extends ResponseStream<T> {
  write(message: Message): Promise<void>
  end(): void
}

export declare class Client {
  static connect(uri: string, options?: ConnectOptions): Promise<Client>
  unary<T = any>(method: string, message: Message, options?: CallOptions): Promise<T>
  serverStream<T = any>(method: string, message: Message, options?: CallOptions): ResponseStream<T>
  clientStream<T = any>(method: string, requests: AsyncIterable<Message> | Iterable<Message>, options?: CallOptions): Promise<T>
  bidi<T = any>(method: string, options?: CallOptions): BidiCall<T>
  transport(): 'quic' | 'tcp' | 'h3' | 'closed'
  close(): void
}
