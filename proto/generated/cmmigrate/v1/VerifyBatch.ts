// Original file: proto/cmmigrate.proto

import type { VerifyEntry as _cmmigrate_v1_VerifyEntry, VerifyEntry__Output as _cmmigrate_v1_VerifyEntry__Output } from '../../cmmigrate/v1/VerifyEntry';
import type { RootDigest as _cmmigrate_v1_RootDigest, RootDigest__Output as _cmmigrate_v1_RootDigest__Output } from '../../cmmigrate/v1/RootDigest';

export interface VerifyBatch {
  'entries'?: (_cmmigrate_v1_VerifyEntry)[];
  'root_done'?: (_cmmigrate_v1_RootDigest | null);
}

export interface VerifyBatch__Output {
  'entries': (_cmmigrate_v1_VerifyEntry__Output)[];
  'root_done': (_cmmigrate_v1_RootDigest__Output | null);
}
