// Original file: proto/cmmigrate.proto

import type { JournalPosition as _cmmigrate_v1_JournalPosition, JournalPosition__Output as _cmmigrate_v1_JournalPosition__Output } from '../../cmmigrate/v1/JournalPosition';
import type { ScopedPath as _cmmigrate_v1_ScopedPath, ScopedPath__Output as _cmmigrate_v1_ScopedPath__Output } from '../../cmmigrate/v1/ScopedPath';
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
  'position'?: (_cmmigrate_v1_JournalPosition | null);
  'scoped'?: (boolean);
  'scope'?: (_cmmigrate_v1_ScopedPath)[];
  'walk_reason'?: (string);
  'identity'?: (string);
  'links_outside'?: (string)[];
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
  'position': (_cmmigrate_v1_JournalPosition__Output | null);
  'scoped': (boolean);
  'scope': (_cmmigrate_v1_ScopedPath__Output)[];
  'walk_reason': (string);
  'identity': (string);
  'links_outside': (string)[];
}
