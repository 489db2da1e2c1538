// Original file: proto/cmmigrate.proto

import type { ListRoot as _cmmigrate_v1_ListRoot, ListRoot__Output as _cmmigrate_v1_ListRoot__Output } from '../../cmmigrate/v1/ListRoot';
import type { ListEntry as _cmmigrate_v1_ListEntry, ListEntry__Output as _cmmigrate_v1_ListEntry__Output } from '../../cmmigrate/v1/ListEntry';
import type { ListEnd as _cmmigrate_v1_ListEnd, ListEnd__Output as _cmmigrate_v1_ListEnd__Output } from '../../cmmigrate/v1/ListEnd';

export interface ListBatch {
  'protocol'?: (string);
  'roots'?: (_cmmigrate_v1_ListRoot)[];
  'entries'?: (_cmmigrate_v1_ListEntry)[];
  'root_end'?: (_cmmigrate_v1_ListEnd | null);
  'packed'?: (Buffer | Uint8Array | string);
}

export interface ListBatch__Output {
  'protocol': (string);
  'roots': (_cmmigrate_v1_ListRoot__Output)[];
  'entries': (_cmmigrate_v1_ListEntry__Output)[];
  'root_end': (_cmmigrate_v1_ListEnd__Output | null);
  'packed': (Buffer);
}
