// Original file: proto/cmmigrate.proto

import type { Long } from '@grpc/proto-loader';

export interface RootWalk {
  'root'?: (string);
  'scoped'?: (boolean);
  'paths'?: (number | string | Long);
  'reason'?: (string);
}

export interface RootWalk__Output {
  'root': (string);
  'scoped': (boolean);
  'paths': (string);
  'reason': (string);
}
