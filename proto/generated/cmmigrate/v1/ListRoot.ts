// Original file: proto/cmmigrate.proto

import type { Long } from '@grpc/proto-loader';

export interface ListRoot {
  'name'?: (string);
  'rel'?: (string);
  'present'?: (boolean);
  'files'?: (number | string | Long);
  'bytes'?: (number | string | Long);
  'entries'?: (number | string | Long);
  'users'?: (string)[];
  'groups'?: (string)[];
}

export interface ListRoot__Output {
  'name': (string);
  'rel': (string);
  'present': (boolean);
  'files': (string);
  'bytes': (string);
  'entries': (string);
  'users': (string)[];
  'groups': (string)[];
}
