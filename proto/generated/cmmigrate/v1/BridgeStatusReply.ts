// Original file: proto/cmmigrate.proto

import type { BridgeLimits as _cmmigrate_v1_BridgeLimits, BridgeLimits__Output as _cmmigrate_v1_BridgeLimits__Output } from '../../cmmigrate/v1/BridgeLimits';
import type { BridgePortStatus as _cmmigrate_v1_BridgePortStatus, BridgePortStatus__Output as _cmmigrate_v1_BridgePortStatus__Output } from '../../cmmigrate/v1/BridgePortStatus';

export interface BridgeStatusReply {
  'running'?: (boolean);
  'listen'?: (string)[];
  'target'?: (string);
  'limits'?: (_cmmigrate_v1_BridgeLimits | null);
  'started_ms'?: (string);
  'now_ms'?: (string);
  'open'?: (number);
  'ports'?: (_cmmigrate_v1_BridgePortStatus)[];
  'resume_error_code'?: (string);
  'resume_error'?: (string);
}

export interface BridgeStatusReply__Output {
  'running': (boolean);
  'listen': (string)[];
  'target': (string);
  'limits': (_cmmigrate_v1_BridgeLimits__Output | null);
  'started_ms': (string);
  'now_ms': (string);
  'open': (number);
  'ports': (_cmmigrate_v1_BridgePortStatus__Output)[];
  'resume_error_code': (string);
  'resume_error': (string);
}
