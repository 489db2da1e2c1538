// Original file: proto/cmmigrate.proto

import type { UnitState as _cmmigrate_v1_UnitState, UnitState__Output as _cmmigrate_v1_UnitState__Output } from '../../cmmigrate/v1/UnitState';
import type { Long } from '@grpc/proto-loader';

export interface HostOpReply {
  'units'?: (_cmmigrate_v1_UnitState)[];
  'output'?: (string);
  'chatmail_version'?: (string);
  'chatmail_version_present'?: (boolean);
  'free_bytes'?: (number | string | Long);
  'total_bytes'?: (number | string | Long);
  'path'?: (string);
  'tree_bytes'?: (number | string | Long);
  'tree_files'?: (number | string | Long);
}

export interface HostOpReply__Output {
  'units': (_cmmigrate_v1_UnitState__Output)[];
  'output': (string);
  'chatmail_version': (string);
  'chatmail_version_present': (boolean);
  'free_bytes': (string);
  'total_bytes': (string);
  'path': (string);
  'tree_bytes': (string);
  'tree_files': (string);
}
