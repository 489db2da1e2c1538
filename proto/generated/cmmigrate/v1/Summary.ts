// Original file: proto/cmmigrate.proto

import type { RootWalk as _cmmigrate_v1_RootWalk, RootWalk__Output as _cmmigrate_v1_RootWalk__Output } from '../../cmmigrate/v1/RootWalk';
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
  'renamed'?: (number | string | Long);
  'deleted'?: (number | string | Long);
  'unchanged'?: (number | string | Long);
  'kept_extraneous'?: (number | string | Long);
  'vanished'?: (number | string | Long);
  'deletes_skipped'?: (boolean);
  'kept_paths'?: (string)[];
  'vanished_paths'?: (string)[];
  'walks'?: (_cmmigrate_v1_RootWalk)[];
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
  'renamed': (string);
  'deleted': (string);
  'unchanged': (string);
  'kept_extraneous': (string);
  'vanished': (string);
  'deletes_skipped': (boolean);
  'kept_paths': (string)[];
  'vanished_paths': (string)[];
  'walks': (_cmmigrate_v1_RootWalk__Output)[];
}
