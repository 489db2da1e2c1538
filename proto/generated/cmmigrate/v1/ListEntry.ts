// Original file: proto/cmmigrate.proto

import type { Long } from '@grpc/proto-loader';

export interface ListEntry {
  'path'?: (string);
  'type'?: (string);
  'size'?: (number | string | Long);
  'mtime_ns'?: (string);
  'mode'?: (number);
  'user'?: (string);
  'group'?: (string);
  'link'?: (string);
  'ino'?: (string);
  'leader'?: (string);
  'nlink'?: (number | string | Long);
}

export interface ListEntry__Output {
  'path': (string);
  'type': (string);
  'size': (string);
  'mtime_ns': (string);
  'mode': (number);
  'user': (string);
  'group': (string);
  'link': (string);
  'ino': (string);
  'leader': (string);
  'nlink': (string);
}
