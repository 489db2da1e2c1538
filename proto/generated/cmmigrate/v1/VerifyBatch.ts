// Original file: proto/cmmigrate.proto

import type { RootDigest as _cmmigrate_v1_RootDigest, RootDigest__Output as _cmmigrate_v1_RootDigest__Output } from '../../cmmigrate/v1/RootDigest';

export interface VerifyBatch {
  'root_done'?: (_cmmigrate_v1_RootDigest | null);
  'lines'?: (Buffer | Uint8Array | string);
}

export interface VerifyBatch__Output {
  'root_done': (_cmmigrate_v1_RootDigest__Output | null);
  'lines': (Buffer);
}
