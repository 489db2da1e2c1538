// Original file: proto/cmmigrate.proto

import type { Phase as _cmmigrate_v1_Phase, Phase__Output as _cmmigrate_v1_Phase__Output } from '../../cmmigrate/v1/Phase';
import type { Scope as _cmmigrate_v1_Scope, Scope__Output as _cmmigrate_v1_Scope__Output } from '../../cmmigrate/v1/Scope';
import type { RootJournal as _cmmigrate_v1_RootJournal, RootJournal__Output as _cmmigrate_v1_RootJournal__Output } from '../../cmmigrate/v1/RootJournal';

export interface ListRequest {
  'phase'?: (_cmmigrate_v1_Phase);
  'scope'?: (_cmmigrate_v1_Scope | null);
  'journal'?: (_cmmigrate_v1_RootJournal)[];
}

export interface ListRequest__Output {
  'phase': (_cmmigrate_v1_Phase__Output);
  'scope': (_cmmigrate_v1_Scope__Output | null);
  'journal': (_cmmigrate_v1_RootJournal__Output)[];
}
