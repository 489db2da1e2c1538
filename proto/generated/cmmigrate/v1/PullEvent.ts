// Original file: proto/cmmigrate.proto

import type { Progress as _cmmigrate_v1_Progress, Progress__Output as _cmmigrate_v1_Progress__Output } from '../../cmmigrate/v1/Progress';
import type { Summary as _cmmigrate_v1_Summary, Summary__Output as _cmmigrate_v1_Summary__Output } from '../../cmmigrate/v1/Summary';

export interface PullEvent {
  'progress'?: (_cmmigrate_v1_Progress | null);
  'summary'?: (_cmmigrate_v1_Summary | null);
  'event'?: "progress"|"summary";
}

export interface PullEvent__Output {
  'progress'?: (_cmmigrate_v1_Progress__Output | null);
  'summary'?: (_cmmigrate_v1_Summary__Output | null);
  'event'?: "progress"|"summary";
}
