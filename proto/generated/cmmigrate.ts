import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { AgentClient as _cmmigrate_v1_AgentClient, AgentDefinition as _cmmigrate_v1_AgentDefinition } from './cmmigrate/v1/Agent';
import type { BridgeLimits as _cmmigrate_v1_BridgeLimits, BridgeLimits__Output as _cmmigrate_v1_BridgeLimits__Output } from './cmmigrate/v1/BridgeLimits';
import type { BridgeMinutes as _cmmigrate_v1_BridgeMinutes, BridgeMinutes__Output as _cmmigrate_v1_BridgeMinutes__Output } from './cmmigrate/v1/BridgeMinutes';
import type { BridgePortStatus as _cmmigrate_v1_BridgePortStatus, BridgePortStatus__Output as _cmmigrate_v1_BridgePortStatus__Output } from './cmmigrate/v1/BridgePortStatus';
import type { BridgeStartRequest as _cmmigrate_v1_BridgeStartRequest, BridgeStartRequest__Output as _cmmigrate_v1_BridgeStartRequest__Output } from './cmmigrate/v1/BridgeStartRequest';
import type { BridgeStatusReply as _cmmigrate_v1_BridgeStatusReply, BridgeStatusReply__Output as _cmmigrate_v1_BridgeStatusReply__Output } from './cmmigrate/v1/BridgeStatusReply';
import type { BridgeStatusRequest as _cmmigrate_v1_BridgeStatusRequest, BridgeStatusRequest__Output as _cmmigrate_v1_BridgeStatusRequest__Output } from './cmmigrate/v1/BridgeStatusRequest';
import type { BridgeStopRequest as _cmmigrate_v1_BridgeStopRequest, BridgeStopRequest__Output as _cmmigrate_v1_BridgeStopRequest__Output } from './cmmigrate/v1/BridgeStopRequest';
import type { Chunk as _cmmigrate_v1_Chunk, Chunk__Output as _cmmigrate_v1_Chunk__Output } from './cmmigrate/v1/Chunk';
import type { FetchItem as _cmmigrate_v1_FetchItem, FetchItem__Output as _cmmigrate_v1_FetchItem__Output } from './cmmigrate/v1/FetchItem';
import type { FetchRequest as _cmmigrate_v1_FetchRequest, FetchRequest__Output as _cmmigrate_v1_FetchRequest__Output } from './cmmigrate/v1/FetchRequest';
import type { HostOpReply as _cmmigrate_v1_HostOpReply, HostOpReply__Output as _cmmigrate_v1_HostOpReply__Output } from './cmmigrate/v1/HostOpReply';
import type { HostOpRequest as _cmmigrate_v1_HostOpRequest, HostOpRequest__Output as _cmmigrate_v1_HostOpRequest__Output } from './cmmigrate/v1/HostOpRequest';
import type { InfoReply as _cmmigrate_v1_InfoReply, InfoReply__Output as _cmmigrate_v1_InfoReply__Output } from './cmmigrate/v1/InfoReply';
import type { InfoRequest as _cmmigrate_v1_InfoRequest, InfoRequest__Output as _cmmigrate_v1_InfoRequest__Output } from './cmmigrate/v1/InfoRequest';
import type { Item as _cmmigrate_v1_Item, Item__Output as _cmmigrate_v1_Item__Output } from './cmmigrate/v1/Item';
import type { JournalPosition as _cmmigrate_v1_JournalPosition, JournalPosition__Output as _cmmigrate_v1_JournalPosition__Output } from './cmmigrate/v1/JournalPosition';
import type { ListBatch as _cmmigrate_v1_ListBatch, ListBatch__Output as _cmmigrate_v1_ListBatch__Output } from './cmmigrate/v1/ListBatch';
import type { ListEnd as _cmmigrate_v1_ListEnd, ListEnd__Output as _cmmigrate_v1_ListEnd__Output } from './cmmigrate/v1/ListEnd';
import type { ListEntry as _cmmigrate_v1_ListEntry, ListEntry__Output as _cmmigrate_v1_ListEntry__Output } from './cmmigrate/v1/ListEntry';
import type { ListRequest as _cmmigrate_v1_ListRequest, ListRequest__Output as _cmmigrate_v1_ListRequest__Output } from './cmmigrate/v1/ListRequest';
import type { ListRoot as _cmmigrate_v1_ListRoot, ListRoot__Output as _cmmigrate_v1_ListRoot__Output } from './cmmigrate/v1/ListRoot';
import type { OwnerRule as _cmmigrate_v1_OwnerRule, OwnerRule__Output as _cmmigrate_v1_OwnerRule__Output } from './cmmigrate/v1/OwnerRule';
import type { Progress as _cmmigrate_v1_Progress, Progress__Output as _cmmigrate_v1_Progress__Output } from './cmmigrate/v1/Progress';
import type { PullEvent as _cmmigrate_v1_PullEvent, PullEvent__Output as _cmmigrate_v1_PullEvent__Output } from './cmmigrate/v1/PullEvent';
import type { PullRequest as _cmmigrate_v1_PullRequest, PullRequest__Output as _cmmigrate_v1_PullRequest__Output } from './cmmigrate/v1/PullRequest';
import type { RootDigest as _cmmigrate_v1_RootDigest, RootDigest__Output as _cmmigrate_v1_RootDigest__Output } from './cmmigrate/v1/RootDigest';
import type { RootInfo as _cmmigrate_v1_RootInfo, RootInfo__Output as _cmmigrate_v1_RootInfo__Output } from './cmmigrate/v1/RootInfo';
import type { RootJournal as _cmmigrate_v1_RootJournal, RootJournal__Output as _cmmigrate_v1_RootJournal__Output } from './cmmigrate/v1/RootJournal';
import type { RootWalk as _cmmigrate_v1_RootWalk, RootWalk__Output as _cmmigrate_v1_RootWalk__Output } from './cmmigrate/v1/RootWalk';
import type { Scope as _cmmigrate_v1_Scope, Scope__Output as _cmmigrate_v1_Scope__Output } from './cmmigrate/v1/Scope';
import type { ScopedPath as _cmmigrate_v1_ScopedPath, ScopedPath__Output as _cmmigrate_v1_ScopedPath__Output } from './cmmigrate/v1/ScopedPath';
import type { Summary as _cmmigrate_v1_Summary, Summary__Output as _cmmigrate_v1_Summary__Output } from './cmmigrate/v1/Summary';
import type { UnitState as _cmmigrate_v1_UnitState, UnitState__Output as _cmmigrate_v1_UnitState__Output } from './cmmigrate/v1/UnitState';
import type { VerifyBatch as _cmmigrate_v1_VerifyBatch, VerifyBatch__Output as _cmmigrate_v1_VerifyBatch__Output } from './cmmigrate/v1/VerifyBatch';
import type { VerifyRequest as _cmmigrate_v1_VerifyRequest, VerifyRequest__Output as _cmmigrate_v1_VerifyRequest__Output } from './cmmigrate/v1/VerifyRequest';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  cmmigrate: {
    v1: {
      Agent: SubtypeConstructor<typeof grpc.Client, _cmmigrate_v1_AgentClient> & { service: _cmmigrate_v1_AgentDefinition }
      BridgeLimits: MessageTypeDefinition<_cmmigrate_v1_BridgeLimits, _cmmigrate_v1_BridgeLimits__Output>
      BridgeMinutes: MessageTypeDefinition<_cmmigrate_v1_BridgeMinutes, _cmmigrate_v1_BridgeMinutes__Output>
      BridgePortStatus: MessageTypeDefinition<_cmmigrate_v1_BridgePortStatus, _cmmigrate_v1_BridgePortStatus__Output>
      BridgeStartRequest: MessageTypeDefinition<_cmmigrate_v1_BridgeStartRequest, _cmmigrate_v1_BridgeStartRequest__Output>
      BridgeStatusReply: MessageTypeDefinition<_cmmigrate_v1_BridgeStatusReply, _cmmigrate_v1_BridgeStatusReply__Output>
      BridgeStatusRequest: MessageTypeDefinition<_cmmigrate_v1_BridgeStatusRequest, _cmmigrate_v1_BridgeStatusRequest__Output>
      BridgeStopRequest: MessageTypeDefinition<_cmmigrate_v1_BridgeStopRequest, _cmmigrate_v1_BridgeStopRequest__Output>
      Chunk: MessageTypeDefinition<_cmmigrate_v1_Chunk, _cmmigrate_v1_Chunk__Output>
      FetchItem: MessageTypeDefinition<_cmmigrate_v1_FetchItem, _cmmigrate_v1_FetchItem__Output>
      FetchRequest: MessageTypeDefinition<_cmmigrate_v1_FetchRequest, _cmmigrate_v1_FetchRequest__Output>
      HostOpReply: MessageTypeDefinition<_cmmigrate_v1_HostOpReply, _cmmigrate_v1_HostOpReply__Output>
      HostOpRequest: MessageTypeDefinition<_cmmigrate_v1_HostOpRequest, _cmmigrate_v1_HostOpRequest__Output>
      InfoReply: MessageTypeDefinition<_cmmigrate_v1_InfoReply, _cmmigrate_v1_InfoReply__Output>
      InfoRequest: MessageTypeDefinition<_cmmigrate_v1_InfoRequest, _cmmigrate_v1_InfoRequest__Output>
      Item: MessageTypeDefinition<_cmmigrate_v1_Item, _cmmigrate_v1_Item__Output>
      JournalPosition: MessageTypeDefinition<_cmmigrate_v1_JournalPosition, _cmmigrate_v1_JournalPosition__Output>
      ListBatch: MessageTypeDefinition<_cmmigrate_v1_ListBatch, _cmmigrate_v1_ListBatch__Output>
      ListEnd: MessageTypeDefinition<_cmmigrate_v1_ListEnd, _cmmigrate_v1_ListEnd__Output>
      ListEntry: MessageTypeDefinition<_cmmigrate_v1_ListEntry, _cmmigrate_v1_ListEntry__Output>
      ListRequest: MessageTypeDefinition<_cmmigrate_v1_ListRequest, _cmmigrate_v1_ListRequest__Output>
      ListRoot: MessageTypeDefinition<_cmmigrate_v1_ListRoot, _cmmigrate_v1_ListRoot__Output>
      OwnerRule: MessageTypeDefinition<_cmmigrate_v1_OwnerRule, _cmmigrate_v1_OwnerRule__Output>
      Phase: EnumTypeDefinition
      Progress: MessageTypeDefinition<_cmmigrate_v1_Progress, _cmmigrate_v1_Progress__Output>
      PullEvent: MessageTypeDefinition<_cmmigrate_v1_PullEvent, _cmmigrate_v1_PullEvent__Output>
      PullRequest: MessageTypeDefinition<_cmmigrate_v1_PullRequest, _cmmigrate_v1_PullRequest__Output>
      RootDigest: MessageTypeDefinition<_cmmigrate_v1_RootDigest, _cmmigrate_v1_RootDigest__Output>
      RootInfo: MessageTypeDefinition<_cmmigrate_v1_RootInfo, _cmmigrate_v1_RootInfo__Output>
      RootJournal: MessageTypeDefinition<_cmmigrate_v1_RootJournal, _cmmigrate_v1_RootJournal__Output>
      RootWalk: MessageTypeDefinition<_cmmigrate_v1_RootWalk, _cmmigrate_v1_RootWalk__Output>
      Scope: MessageTypeDefinition<_cmmigrate_v1_Scope, _cmmigrate_v1_Scope__Output>
      ScopedPath: MessageTypeDefinition<_cmmigrate_v1_ScopedPath, _cmmigrate_v1_ScopedPath__Output>
      Summary: MessageTypeDefinition<_cmmigrate_v1_Summary, _cmmigrate_v1_Summary__Output>
      UnitState: MessageTypeDefinition<_cmmigrate_v1_UnitState, _cmmigrate_v1_UnitState__Output>
      VerifyBatch: MessageTypeDefinition<_cmmigrate_v1_VerifyBatch, _cmmigrate_v1_VerifyBatch__Output>
      VerifyRequest: MessageTypeDefinition<_cmmigrate_v1_VerifyRequest, _cmmigrate_v1_VerifyRequest__Output>
    }
  }
}

