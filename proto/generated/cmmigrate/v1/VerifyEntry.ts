// Original file: proto/cmmigrate.proto

import type { Long } from '@grpc/proto-loader';

export interface VerifyEntry {
  'path'?: (string);
  'type'?: (string);
  'size'?: (number | string | Long);
  'mode'?: (number);
  'user'?: (string);
  'group'?: (string);
  'mtime_us'?: (string);
  'sha256'?: (string);
  'link'?: (string);
  'hardlink'?: (string);
}

export interface VerifyEntry__Output {
  'path': (string);
  'type': (string);
  'size': (string);
  'mode': (number);
  'user': (string);
  'group': (string);
  'mtime_us': (string);
  'sha256': (string);
  'link': (string);
  'hardlink': (string);
}
