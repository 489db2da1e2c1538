// Original file: proto/cmmigrate.proto

import type { Long } from '@grpc/proto-loader';

export interface FetchItem {
  'path'?: (string);
  'size'?: (number | string | Long);
  'mtime_ns'?: (string);
}

export interface FetchItem__Output {
  'path': (string);
  'size': (string);
  'mtime_ns': (string);
}
