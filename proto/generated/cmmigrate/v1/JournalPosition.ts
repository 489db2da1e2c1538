// Original file: proto/cmmigrate.proto

import type { Long } from '@grpc/proto-loader';

export interface JournalPosition {
  'epoch'?: (string);
  'seq'?: (number | string | Long);
}

export interface JournalPosition__Output {
  'epoch': (string);
  'seq': (string);
}
