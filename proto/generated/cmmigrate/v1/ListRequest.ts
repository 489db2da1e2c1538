// Original file: proto/cmmigrate.proto

import type { Phase as _cmmigrate_v1_Phase, Phase__Output as _cmmigrate_v1_Phase__Output } from '../../cmmigrate/v1/Phase';
import type { Scope as _cmmigrate_v1_Scope, Scope__Output as _cmmigrate_v1_Scope__Output } from '../../cmmigrate/v1/Scope';

export interface ListRequest {
  'phase'?: (_cmmigrate_v1_Phase);
  'scope'?: (_cmmigrate_v1_Scope | null);
}

export interface ListRequest__Output {
  'phase': (_cmmigrate_v1_Phase__Output);
  'scope': (_cmmigrate_v1_Scope__Output | null);
}
