// Original file: proto/cmmigrate.proto

import type { Long } from '@grpc/proto-loader';

export interface Summary {
  'files'?: (number | string | Long);
  'bytes'?: (number | string | Long);
  'dirs'?: (number | string | Long);
  'symlinks'?: (number | string | Long);
  'hardlinks'?: (number | string | Long);
  'fifos'?: (number | string | Long);
  'sockets_skipped'?: (number | string | Long);
  'seconds'?: (number | string);
  'wire_bytes'?: (number | string | Long);
  'absent_roots'?: (string)[];
  'owners_defaulted'?: (string)[];
}

export interface Summary__Output {
  'files': (string);
  'bytes': (string);
  'dirs': (string);
  'symlinks': (string);
  'hardlinks': (string);
  'fifos': (string);
  'sockets_skipped': (string);
  'seconds': (number);
  'wire_bytes': (string);
  'absent_roots': (string)[];
  'owners_defaulted': (string)[];
}
