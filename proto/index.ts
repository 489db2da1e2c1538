/**
 * The wire contract, loaded once with one set of proto-loader options. Both the agent and
 * the controller import this module and nothing else of each other.
 *
 * The contract is read from `generated/cmmigrate.json`, the JSON descriptor of
 * `cmmigrate.proto` that `proto/build/proto-json.js` writes on every build, so a bundle (the
 * single-file agent) carries it inline and never looks for a `.proto` on disk.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import descriptor from './generated/cmmigrate.json';
import type { ProtoGrpcType } from './generated/cmmigrate';
import type { AgentClient, AgentDefinition } from './generated/cmmigrate/v1/Agent';

export type { AgentClient, AgentHandlers } from './generated/cmmigrate/v1/Agent';
export type { PullEvent__Output, PullEvent } from './generated/cmmigrate/v1/PullEvent';
export type { Summary__Output, Summary } from './generated/cmmigrate/v1/Summary';
export type { Progress, Progress__Output } from './generated/cmmigrate/v1/Progress';
export type { VerifyBatch, VerifyBatch__Output } from './generated/cmmigrate/v1/VerifyBatch';
export type { RootDigest, RootDigest__Output } from './generated/cmmigrate/v1/RootDigest';
export type { InfoReply, InfoReply__Output } from './generated/cmmigrate/v1/InfoReply';
export type { Scope__Output } from './generated/cmmigrate/v1/Scope';
export type { OwnerRule, OwnerRule__Output } from './generated/cmmigrate/v1/OwnerRule';
export type { PullRequest, PullRequest__Output } from './generated/cmmigrate/v1/PullRequest';
export type { Chunk, Chunk__Output } from './generated/cmmigrate/v1/Chunk';
export type { Phase__Output as PhaseName } from './generated/cmmigrate/v1/Phase';
export type { ListBatch, ListBatch__Output } from './generated/cmmigrate/v1/ListBatch';
export type { ListEntry, ListEntry__Output } from './generated/cmmigrate/v1/ListEntry';
export type { ListRoot__Output } from './generated/cmmigrate/v1/ListRoot';
export type { ScopedPath__Output } from './generated/cmmigrate/v1/ScopedPath';
export type { ListEnd__Output } from './generated/cmmigrate/v1/ListEnd';
export type { FetchRequest, FetchRequest__Output } from './generated/cmmigrate/v1/FetchRequest';
export type { FetchItem } from './generated/cmmigrate/v1/FetchItem';
export type { Item, Item__Output } from './generated/cmmigrate/v1/Item';
export type { HostOpReply, HostOpReply__Output } from './generated/cmmigrate/v1/HostOpReply';
export type { HostOpRequest, HostOpRequest__Output } from './generated/cmmigrate/v1/HostOpRequest';
export type { BridgeStartRequest, BridgeStartRequest__Output } from './generated/cmmigrate/v1/BridgeStartRequest';
export type { BridgeStatusReply, BridgeStatusReply__Output } from './generated/cmmigrate/v1/BridgeStatusReply';
export type { BridgePortStatus, BridgePortStatus__Output } from './generated/cmmigrate/v1/BridgePortStatus';
export type { BridgeLimits as BridgeLimitsWire, BridgeLimits__Output as BridgeLimitsWire__Output } from './generated/cmmigrate/v1/BridgeLimits';

export * from './errors';
export * from './roots';
export * from './order';
export * from './verify-record';
export * from './address';
export * from './host-ops';
export * from './external-tls';
export * from './runtime';
export * from './numbered';
export * from './roles';

/** The version of the wire protocol; agents of different protocol versions refuse each other. */
export const PROTOCOL_VERSION = '4';

/** The one set of loader options, as grpc-node recommends. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** Largest message either side accepts: chunks are at most 1 MiB of tar plus framing. */
export const MAX_MESSAGE_BYTES = 2 * 1024 * 1024;
/** Tar bytes per Send message: at least this much unless the stream ends. */
export const CHUNK_MIN_BYTES = 256 * 1024;
/** Tar bytes per Send message, at most. */
export const CHUNK_MAX_BYTES = 1024 * 1024;
/**
 * The HTTP/2 receive window of a pulling client. grpc-js pins a server's window at 64 KiB,
 * which is why the receiver pulls and raises its own window: a bulk stream over a WAN
 * needs a window of about rate × round trip.
 */
export const CLIENT_FLOW_CONTROL_WINDOW = 16 * 1024 * 1024;

/**
 * The Node.js flags every launcher of the agent passes (its `#!` line, the systemd unit,
 * the tests). V8 otherwise grows its heap lazily towards gigabytes while the agent's live
 * heap stays around 40 MB; with these its RSS stays bounded on a relay host. Keep the
 * `#!` line of agent/cli.ts in step (a test checks it).
 */
export const AGENT_NODE_FLAGS: readonly string[] = ['--max-old-space-size=256', '--max-semi-space-size=4'];

/** Channel options every client of an agent uses. */
export function clientChannelOptions(bulk = false): grpc.ChannelOptions {
  return {
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    // A stalled or vanished peer must fail the call rather than hang it.
    'grpc.keepalive_time_ms': 20_000,
    'grpc.keepalive_timeout_ms': 20_000,
    'grpc.keepalive_permit_without_calls': 1,
    ...(bulk ? { 'grpc-node.flow_control_window': CLIENT_FLOW_CONTROL_WINDOW } : {}),
  };
}

/** Server options every agent uses. */
export const SERVER_OPTIONS: grpc.ServerOptions = {
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  'grpc.keepalive_time_ms': 20_000,
  'grpc.keepalive_timeout_ms': 20_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 5_000,
};

let loaded: ProtoGrpcType | undefined;

/** The loaded package definition (cached). */
export function wire(): ProtoGrpcType {
  if (!loaded) {
    // The descriptor was parsed with keepCase; the other options apply here.
    const def = protoLoader.fromJSON(descriptor as Parameters<typeof protoLoader.fromJSON>[0], LOADER_OPTIONS);
    loaded = grpc.loadPackageDefinition(def) as unknown as ProtoGrpcType;
  }
  return loaded;
}

/** The Agent service definition, for `server.addService`. */
export function agentService(): AgentDefinition {
  return wire().cmmigrate.v1.Agent.service;
}

/** A typed client of an agent. */
export function agentClient(address: string, creds: grpc.ChannelCredentials, options: grpc.ChannelOptions): AgentClient {
  const Ctor = wire().cmmigrate.v1.Agent;
  return new Ctor(address, creds, options) as AgentClient;
}
