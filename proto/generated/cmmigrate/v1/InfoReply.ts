// Original file: proto/cmmigrate.proto

import type { RootInfo as _cmmigrate_v1_RootInfo, RootInfo__Output as _cmmigrate_v1_RootInfo__Output } from '../../cmmigrate/v1/RootInfo';
import type { Long } from '@grpc/proto-loader';

export interface InfoReply {
  'version'?: (string);
  'protocol'?: (string);
  'hostname'?: (string);
  'os'?: (string);
  'node'?: (string);
  'root'?: (string);
  'roots'?: (_cmmigrate_v1_RootInfo)[];
  'free_bytes'?: (number | string | Long);
  'role'?: (string);
}

export interface InfoReply__Output {
  'version': (string);
  'protocol': (string);
  'hostname': (string);
  'os': (string);
  'node': (string);
  'root': (string);
  'roots': (_cmmigrate_v1_RootInfo__Output)[];
  'free_bytes': (string);
  'role': (string);
}
