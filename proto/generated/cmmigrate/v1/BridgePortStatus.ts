// Original file: proto/cmmigrate.proto

import type { BridgeMinutes as _cmmigrate_v1_BridgeMinutes, BridgeMinutes__Output as _cmmigrate_v1_BridgeMinutes__Output } from '../../cmmigrate/v1/BridgeMinutes';
import type { Long } from '@grpc/proto-loader';

export interface BridgePortStatus {
  'port'?: (number);
  'open'?: (number);
  'total'?: (number | string | Long);
  'refused'?: (number | string | Long);
  'target_failed'?: (number | string | Long);
  'idle_closed'?: (number | string | Long);
  'bytes_to_target'?: (number | string | Long);
  'bytes_from_target'?: (number | string | Long);
  'last_connection_ms'?: (string);
  'buffered'?: (number | string | Long);
  'per_minute'?: (_cmmigrate_v1_BridgeMinutes | null);
}

export interface BridgePortStatus__Output {
  'port': (number);
  'open': (number);
  'total': (string);
  'refused': (string);
  'target_failed': (string);
  'idle_closed': (string);
  'bytes_to_target': (string);
  'bytes_from_target': (string);
  'last_connection_ms': (string);
  'buffered': (string);
  'per_minute': (_cmmigrate_v1_BridgeMinutes__Output | null);
}
