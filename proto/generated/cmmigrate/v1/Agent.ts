// Original file: proto/cmmigrate.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { BridgeStartRequest as _cmmigrate_v1_BridgeStartRequest, BridgeStartRequest__Output as _cmmigrate_v1_BridgeStartRequest__Output } from '../../cmmigrate/v1/BridgeStartRequest';
import type { BridgeStatusReply as _cmmigrate_v1_BridgeStatusReply, BridgeStatusReply__Output as _cmmigrate_v1_BridgeStatusReply__Output } from '../../cmmigrate/v1/BridgeStatusReply';
import type { BridgeStatusRequest as _cmmigrate_v1_BridgeStatusRequest, BridgeStatusRequest__Output as _cmmigrate_v1_BridgeStatusRequest__Output } from '../../cmmigrate/v1/BridgeStatusRequest';
import type { BridgeStopRequest as _cmmigrate_v1_BridgeStopRequest, BridgeStopRequest__Output as _cmmigrate_v1_BridgeStopRequest__Output } from '../../cmmigrate/v1/BridgeStopRequest';
import type { Chunk as _cmmigrate_v1_Chunk, Chunk__Output as _cmmigrate_v1_Chunk__Output } from '../../cmmigrate/v1/Chunk';
import type { FetchRequest as _cmmigrate_v1_FetchRequest, FetchRequest__Output as _cmmigrate_v1_FetchRequest__Output } from '../../cmmigrate/v1/FetchRequest';
import type { HostOpReply as _cmmigrate_v1_HostOpReply, HostOpReply__Output as _cmmigrate_v1_HostOpReply__Output } from '../../cmmigrate/v1/HostOpReply';
import type { HostOpRequest as _cmmigrate_v1_HostOpRequest, HostOpRequest__Output as _cmmigrate_v1_HostOpRequest__Output } from '../../cmmigrate/v1/HostOpRequest';
import type { InfoReply as _cmmigrate_v1_InfoReply, InfoReply__Output as _cmmigrate_v1_InfoReply__Output } from '../../cmmigrate/v1/InfoReply';
import type { InfoRequest as _cmmigrate_v1_InfoRequest, InfoRequest__Output as _cmmigrate_v1_InfoRequest__Output } from '../../cmmigrate/v1/InfoRequest';
import type { ListBatch as _cmmigrate_v1_ListBatch, ListBatch__Output as _cmmigrate_v1_ListBatch__Output } from '../../cmmigrate/v1/ListBatch';
import type { ListRequest as _cmmigrate_v1_ListRequest, ListRequest__Output as _cmmigrate_v1_ListRequest__Output } from '../../cmmigrate/v1/ListRequest';
import type { PullEvent as _cmmigrate_v1_PullEvent, PullEvent__Output as _cmmigrate_v1_PullEvent__Output } from '../../cmmigrate/v1/PullEvent';
import type { PullRequest as _cmmigrate_v1_PullRequest, PullRequest__Output as _cmmigrate_v1_PullRequest__Output } from '../../cmmigrate/v1/PullRequest';
import type { VerifyBatch as _cmmigrate_v1_VerifyBatch, VerifyBatch__Output as _cmmigrate_v1_VerifyBatch__Output } from '../../cmmigrate/v1/VerifyBatch';
import type { VerifyRequest as _cmmigrate_v1_VerifyRequest, VerifyRequest__Output as _cmmigrate_v1_VerifyRequest__Output } from '../../cmmigrate/v1/VerifyRequest';

export interface AgentClient extends grpc.Client {
  BridgeStart(argument: _cmmigrate_v1_BridgeStartRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_cmmigrate_v1_BridgeStatusReply__Output>): grpc.ClientUnaryCall;
  BridgeStart(argument: _cmmigrate_v1_BridgeStartRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_cmmigrate_v1_BridgeStatusReply__Output>): grpc.ClientUnaryCall;
  BridgeStart(argument: _cmmigrate_v1_BridgeStartRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_cmmigrate_v1_BridgeStatusReply__Output>): grpc.ClientUnaryCall;
  BridgeStart(argument: _cmmigrate_v1_BridgeStartRequest, callback: grpc.requestCallback<_cmmigrate_v1_BridgeStatusReply__Output>): grpc.ClientUnaryCall;
  bridgeStart(argument: _cmmigrate_v1_BridgeStartRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_cmmigrate_v1_BridgeStatusReply__Output>): grpc.ClientUnaryCall;
  bridgeStart(argument: _cmmigrate_v1_BridgeStartRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_cmmigrate_v1_BridgeStatusReply__Output>): grpc.ClientUnaryCall;
  bridgeStart(argument: _cmmigrate_v1_BridgeStartRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_cmmigrate_v1_BridgeStatusReply__Output>): grpc.ClientUnaryCall;
  bridgeStart(argument: _cmmigrate_v1_BridgeStartRequest, callback: grpc.requestCallback<_cmmigrate_v1_BridgeStatusReply__Output>): grpc.ClientUnaryCall;
  
  BridgeStatus(argument: _cmmigrate_v1_BridgeStatusRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_cmmigrate_v1_BridgeStatusReply__Output>): grpc.ClientUnaryCall;
  BridgeStatus(argument: _cmmigrate_v1_BridgeStatusRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_cmmigrate_v1_BridgeStatusReply__Output>): grpc.ClientUnaryCall;
  BridgeStatus(argument: _cmmigrate_v1_BridgeStatusRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_cmmigrate_v1_BridgeStatusReply__Output>): grpc.ClientUnaryCall;
  BridgeStatus(argument: _cmmigrate_v1_BridgeStatusRequest, callback: grpc.requestCallback<_cmmigrate_v1_BridgeStatusReply__Output>): grpc.ClientUnaryCall;
  bridgeStatus(argument: _cmmigrate_v1_BridgeStatusRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_cmmigrate_v1_BridgeStatusReply__Output>): grpc.ClientUnaryCall;
  bridgeStatus(argument: _cmmigrate_v1_BridgeStatusRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_cmmigrate_v1_BridgeStatusReply__Output>): grpc.ClientUnaryCall;
  bridgeStatus(argument: _cmmigrate_v1_BridgeStatusRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_cmmigrate_v1_BridgeStatusReply__Output>): grpc.ClientUnaryCall;
  bridgeStatus(argument: _cmmigrate_v1_BridgeStatusRequest, callback: grpc.requestCallback<_cmmigrate_v1_BridgeStatusReply__Output>): grpc.ClientUnaryCall;
  
  BridgeStop(argument: _cmmigrate_v1_BridgeStopRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_cmmigrate_v1_BridgeStatusReply__Output>): grpc.ClientUnaryCall;
  BridgeStop(argument: _cmmigrate_v1_BridgeStopRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_cmmigrate_v1_BridgeStatusReply__Output>): grpc.ClientUnaryCall;
  BridgeStop(argument: _cmmigrate_v1_BridgeStopRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_cmmigrate_v1_BridgeStatusReply__Output>): grpc.ClientUnaryCall;
  BridgeStop(argument: _cmmigrate_v1_BridgeStopRequest, callback: grpc.requestCallback<_cmmigrate_v1_BridgeStatusReply__Output>): grpc.ClientUnaryCall;
  bridgeStop(argument: _cmmigrate_v1_BridgeStopRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_cmmigrate_v1_BridgeStatusReply__Output>): grpc.ClientUnaryCall;
  bridgeStop(argument: _cmmigrate_v1_BridgeStopRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_cmmigrate_v1_BridgeStatusReply__Output>): grpc.ClientUnaryCall;
  bridgeStop(argument: _cmmigrate_v1_BridgeStopRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_cmmigrate_v1_BridgeStatusReply__Output>): grpc.ClientUnaryCall;
  bridgeStop(argument: _cmmigrate_v1_BridgeStopRequest, callback: grpc.requestCallback<_cmmigrate_v1_BridgeStatusReply__Output>): grpc.ClientUnaryCall;
  
  Fetch(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_cmmigrate_v1_FetchRequest, _cmmigrate_v1_Chunk__Output>;
  Fetch(options?: grpc.CallOptions): grpc.ClientDuplexStream<_cmmigrate_v1_FetchRequest, _cmmigrate_v1_Chunk__Output>;
  fetch(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_cmmigrate_v1_FetchRequest, _cmmigrate_v1_Chunk__Output>;
  fetch(options?: grpc.CallOptions): grpc.ClientDuplexStream<_cmmigrate_v1_FetchRequest, _cmmigrate_v1_Chunk__Output>;
  
  HostOp(argument: _cmmigrate_v1_HostOpRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_cmmigrate_v1_HostOpReply__Output>): grpc.ClientUnaryCall;
  HostOp(argument: _cmmigrate_v1_HostOpRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_cmmigrate_v1_HostOpReply__Output>): grpc.ClientUnaryCall;
  HostOp(argument: _cmmigrate_v1_HostOpRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_cmmigrate_v1_HostOpReply__Output>): grpc.ClientUnaryCall;
  HostOp(argument: _cmmigrate_v1_HostOpRequest, callback: grpc.requestCallback<_cmmigrate_v1_HostOpReply__Output>): grpc.ClientUnaryCall;
  hostOp(argument: _cmmigrate_v1_HostOpRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_cmmigrate_v1_HostOpReply__Output>): grpc.ClientUnaryCall;
  hostOp(argument: _cmmigrate_v1_HostOpRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_cmmigrate_v1_HostOpReply__Output>): grpc.ClientUnaryCall;
  hostOp(argument: _cmmigrate_v1_HostOpRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_cmmigrate_v1_HostOpReply__Output>): grpc.ClientUnaryCall;
  hostOp(argument: _cmmigrate_v1_HostOpRequest, callback: grpc.requestCallback<_cmmigrate_v1_HostOpReply__Output>): grpc.ClientUnaryCall;
  
  Info(argument: _cmmigrate_v1_InfoRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_cmmigrate_v1_InfoReply__Output>): grpc.ClientUnaryCall;
  Info(argument: _cmmigrate_v1_InfoRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_cmmigrate_v1_InfoReply__Output>): grpc.ClientUnaryCall;
  Info(argument: _cmmigrate_v1_InfoRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_cmmigrate_v1_InfoReply__Output>): grpc.ClientUnaryCall;
  Info(argument: _cmmigrate_v1_InfoRequest, callback: grpc.requestCallback<_cmmigrate_v1_InfoReply__Output>): grpc.ClientUnaryCall;
  info(argument: _cmmigrate_v1_InfoRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_cmmigrate_v1_InfoReply__Output>): grpc.ClientUnaryCall;
  info(argument: _cmmigrate_v1_InfoRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_cmmigrate_v1_InfoReply__Output>): grpc.ClientUnaryCall;
  info(argument: _cmmigrate_v1_InfoRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_cmmigrate_v1_InfoReply__Output>): grpc.ClientUnaryCall;
  info(argument: _cmmigrate_v1_InfoRequest, callback: grpc.requestCallback<_cmmigrate_v1_InfoReply__Output>): grpc.ClientUnaryCall;
  
  List(argument: _cmmigrate_v1_ListRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_cmmigrate_v1_ListBatch__Output>;
  List(argument: _cmmigrate_v1_ListRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_cmmigrate_v1_ListBatch__Output>;
  list(argument: _cmmigrate_v1_ListRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_cmmigrate_v1_ListBatch__Output>;
  list(argument: _cmmigrate_v1_ListRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_cmmigrate_v1_ListBatch__Output>;
  
  Pull(argument: _cmmigrate_v1_PullRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_cmmigrate_v1_PullEvent__Output>;
  Pull(argument: _cmmigrate_v1_PullRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_cmmigrate_v1_PullEvent__Output>;
  pull(argument: _cmmigrate_v1_PullRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_cmmigrate_v1_PullEvent__Output>;
  pull(argument: _cmmigrate_v1_PullRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_cmmigrate_v1_PullEvent__Output>;
  
  Verify(argument: _cmmigrate_v1_VerifyRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_cmmigrate_v1_VerifyBatch__Output>;
  Verify(argument: _cmmigrate_v1_VerifyRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_cmmigrate_v1_VerifyBatch__Output>;
  verify(argument: _cmmigrate_v1_VerifyRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_cmmigrate_v1_VerifyBatch__Output>;
  verify(argument: _cmmigrate_v1_VerifyRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_cmmigrate_v1_VerifyBatch__Output>;
  
}

export interface AgentHandlers extends grpc.UntypedServiceImplementation {
  BridgeStart: grpc.handleUnaryCall<_cmmigrate_v1_BridgeStartRequest__Output, _cmmigrate_v1_BridgeStatusReply>;
  
  BridgeStatus: grpc.handleUnaryCall<_cmmigrate_v1_BridgeStatusRequest__Output, _cmmigrate_v1_BridgeStatusReply>;
  
  BridgeStop: grpc.handleUnaryCall<_cmmigrate_v1_BridgeStopRequest__Output, _cmmigrate_v1_BridgeStatusReply>;
  
  Fetch: grpc.handleBidiStreamingCall<_cmmigrate_v1_FetchRequest__Output, _cmmigrate_v1_Chunk>;
  
  HostOp: grpc.handleUnaryCall<_cmmigrate_v1_HostOpRequest__Output, _cmmigrate_v1_HostOpReply>;
  
  Info: grpc.handleUnaryCall<_cmmigrate_v1_InfoRequest__Output, _cmmigrate_v1_InfoReply>;
  
  List: grpc.handleServerStreamingCall<_cmmigrate_v1_ListRequest__Output, _cmmigrate_v1_ListBatch>;
  
  Pull: grpc.handleServerStreamingCall<_cmmigrate_v1_PullRequest__Output, _cmmigrate_v1_PullEvent>;
  
  Verify: grpc.handleServerStreamingCall<_cmmigrate_v1_VerifyRequest__Output, _cmmigrate_v1_VerifyBatch>;
  
}

export interface AgentDefinition extends grpc.ServiceDefinition {
  BridgeStart: MethodDefinition<_cmmigrate_v1_BridgeStartRequest, _cmmigrate_v1_BridgeStatusReply, _cmmigrate_v1_BridgeStartRequest__Output, _cmmigrate_v1_BridgeStatusReply__Output>
  BridgeStatus: MethodDefinition<_cmmigrate_v1_BridgeStatusRequest, _cmmigrate_v1_BridgeStatusReply, _cmmigrate_v1_BridgeStatusRequest__Output, _cmmigrate_v1_BridgeStatusReply__Output>
  BridgeStop: MethodDefinition<_cmmigrate_v1_BridgeStopRequest, _cmmigrate_v1_BridgeStatusReply, _cmmigrate_v1_BridgeStopRequest__Output, _cmmigrate_v1_BridgeStatusReply__Output>
  Fetch: MethodDefinition<_cmmigrate_v1_FetchRequest, _cmmigrate_v1_Chunk, _cmmigrate_v1_FetchRequest__Output, _cmmigrate_v1_Chunk__Output>
  HostOp: MethodDefinition<_cmmigrate_v1_HostOpRequest, _cmmigrate_v1_HostOpReply, _cmmigrate_v1_HostOpRequest__Output, _cmmigrate_v1_HostOpReply__Output>
  Info: MethodDefinition<_cmmigrate_v1_InfoRequest, _cmmigrate_v1_InfoReply, _cmmigrate_v1_InfoRequest__Output, _cmmigrate_v1_InfoReply__Output>
  List: MethodDefinition<_cmmigrate_v1_ListRequest, _cmmigrate_v1_ListBatch, _cmmigrate_v1_ListRequest__Output, _cmmigrate_v1_ListBatch__Output>
  Pull: MethodDefinition<_cmmigrate_v1_PullRequest, _cmmigrate_v1_PullEvent, _cmmigrate_v1_PullRequest__Output, _cmmigrate_v1_PullEvent__Output>
  Verify: MethodDefinition<_cmmigrate_v1_VerifyRequest, _cmmigrate_v1_VerifyBatch, _cmmigrate_v1_VerifyRequest__Output, _cmmigrate_v1_VerifyBatch__Output>
}
