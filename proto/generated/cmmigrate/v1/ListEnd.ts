// Original file: proto/cmmigrate.proto

import type { Long } from '@grpc/proto-loader';

export interface ListEnd {
  'sockets_skipped'?: (number | string | Long);
  'vanished'?: (number | string | Long);
  'vanished_paths'?: (string)[];
}

export interface ListEnd__Output {
  'sockets_skipped': (string);
  'vanished': (string);
  'vanished_paths': (string)[];
}
