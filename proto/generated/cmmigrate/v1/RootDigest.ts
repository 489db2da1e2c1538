// Original file: proto/cmmigrate.proto

import type { Long } from '@grpc/proto-loader';

export interface RootDigest {
  'root'?: (string);
  'present'?: (boolean);
  'entries'?: (number | string | Long);
  'sha256'?: (string);
  'sockets_skipped'?: (number | string | Long);
  'from_records'?: (number | string | Long);
  'read'?: (number | string | Long);
  'scoped'?: (boolean);
  'paths'?: (number | string | Long);
  'walk_reason'?: (string);
}

export interface RootDigest__Output {
  'root': (string);
  'present': (boolean);
  'entries': (string);
  'sha256': (string);
  'sockets_skipped': (string);
  'from_records': (string);
  'read': (string);
  'scoped': (boolean);
  'paths': (string);
  'walk_reason': (string);
}
