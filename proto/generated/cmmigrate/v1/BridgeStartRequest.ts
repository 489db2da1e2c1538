// Original file: proto/cmmigrate.proto

import type { BridgeLimits as _cmmigrate_v1_BridgeLimits, BridgeLimits__Output as _cmmigrate_v1_BridgeLimits__Output } from '../../cmmigrate/v1/BridgeLimits';

export interface BridgeStartRequest {
  'listen'?: (string)[];
  'ports'?: (number)[];
  'target'?: (string);
  'limits'?: (_cmmigrate_v1_BridgeLimits | null);
}

export interface BridgeStartRequest__Output {
  'listen': (string)[];
  'ports': (number)[];
  'target': (string);
  'limits': (_cmmigrate_v1_BridgeLimits__Output | null);
}
