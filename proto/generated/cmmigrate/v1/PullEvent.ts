// Original file: proto/cmmigrate.proto

import type { Progress as _cmmigrate_v1_Progress, Progress__Output as _cmmigrate_v1_Progress__Output } from '../../cmmigrate/v1/Progress';
import type { Summary as _cmmigrate_v1_Summary, Summary__Output as _cmmigrate_v1_Summary__Output } from '../../cmmigrate/v1/Summary';
import type { Item as _cmmigrate_v1_Item, Item__Output as _cmmigrate_v1_Item__Output } from '../../cmmigrate/v1/Item';

export interface PullEvent {
  'progress'?: (_cmmigrate_v1_Progress | null);
  'summary'?: (_cmmigrate_v1_Summary | null);
  'item'?: (_cmmigrate_v1_Item | null);
  'event'?: "progress"|"summary"|"item";
}

export interface PullEvent__Output {
  'progress'?: (_cmmigrate_v1_Progress__Output | null);
  'summary'?: (_cmmigrate_v1_Summary__Output | null);
  'item'?: (_cmmigrate_v1_Item__Output | null);
  'event'?: "progress"|"summary"|"item";
}
