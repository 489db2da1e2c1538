// Original file: proto/cmmigrate.proto

import type { Phase as _cmmigrate_v1_Phase, Phase__Output as _cmmigrate_v1_Phase__Output } from '../../cmmigrate/v1/Phase';
import type { Scope as _cmmigrate_v1_Scope, Scope__Output as _cmmigrate_v1_Scope__Output } from '../../cmmigrate/v1/Scope';
import type { OwnerRule as _cmmigrate_v1_OwnerRule, OwnerRule__Output as _cmmigrate_v1_OwnerRule__Output } from '../../cmmigrate/v1/OwnerRule';
import type { Long } from '@grpc/proto-loader';

export interface PullRequest {
  'source'?: (string);
  'phase'?: (_cmmigrate_v1_Phase);
  'scope'?: (_cmmigrate_v1_Scope | null);
  'owners'?: (_cmmigrate_v1_OwnerRule)[];
  'dry_run'?: (boolean);
  'max_delete'?: (number | string | Long);
  'no_journal'?: (boolean);
}

export interface PullRequest__Output {
  'source': (string);
  'phase': (_cmmigrate_v1_Phase__Output);
  'scope': (_cmmigrate_v1_Scope__Output | null);
  'owners': (_cmmigrate_v1_OwnerRule__Output)[];
  'dry_run': (boolean);
  'max_delete': (string);
  'no_journal': (boolean);
}
