// Original file: proto/cmmigrate.proto

import type { Scope as _cmmigrate_v1_Scope, Scope__Output as _cmmigrate_v1_Scope__Output } from '../../cmmigrate/v1/Scope';
import type { OwnerRule as _cmmigrate_v1_OwnerRule, OwnerRule__Output as _cmmigrate_v1_OwnerRule__Output } from '../../cmmigrate/v1/OwnerRule';

export interface VerifyRequest {
  'scope'?: (_cmmigrate_v1_Scope | null);
  'owners'?: (_cmmigrate_v1_OwnerRule)[];
  'quick'?: (boolean);
  'digests_only'?: (boolean);
}

export interface VerifyRequest__Output {
  'scope': (_cmmigrate_v1_Scope__Output | null);
  'owners': (_cmmigrate_v1_OwnerRule__Output)[];
  'quick': (boolean);
  'digests_only': (boolean);
}
