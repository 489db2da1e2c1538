// Original file: proto/cmmigrate.proto

import type { Long } from '@grpc/proto-loader';

export interface Progress {
  'root'?: (string);
  'files'?: (number | string | Long);
  'bytes'?: (number | string | Long);
  'total_files'?: (number | string | Long);
  'total_bytes'?: (number | string | Long);
  'sent_bytes'?: (number | string | Long);
}

export interface Progress__Output {
  'root': (string);
  'files': (string);
  'bytes': (string);
  'total_files': (string);
  'total_bytes': (string);
  'sent_bytes': (string);
}
