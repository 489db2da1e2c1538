// Original file: proto/cmmigrate.proto

import type { Phase as _cmmigrate_v1_Phase, Phase__Output as _cmmigrate_v1_Phase__Output } from '../../cmmigrate/v1/Phase';
import type { Scope as _cmmigrate_v1_Scope, Scope__Output as _cmmigrate_v1_Scope__Output } from '../../cmmigrate/v1/Scope';
import type { FetchItem as _cmmigrate_v1_FetchItem, FetchItem__Output as _cmmigrate_v1_FetchItem__Output } from '../../cmmigrate/v1/FetchItem';

export interface FetchRequest {
  'phase'?: (_cmmigrate_v1_Phase);
  'scope'?: (_cmmigrate_v1_Scope | null);
  'items'?: (_cmmigrate_v1_FetchItem)[];
}

export interface FetchRequest__Output {
  'phase': (_cmmigrate_v1_Phase__Output);
  'scope': (_cmmigrate_v1_Scope__Output | null);
  'items': (_cmmigrate_v1_FetchItem__Output)[];
}
