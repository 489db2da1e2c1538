// Original file: proto/cmmigrate.proto

import type { JournalPosition as _cmmigrate_v1_JournalPosition, JournalPosition__Output as _cmmigrate_v1_JournalPosition__Output } from '../../cmmigrate/v1/JournalPosition';
import type { ScopedPath as _cmmigrate_v1_ScopedPath, ScopedPath__Output as _cmmigrate_v1_ScopedPath__Output } from '../../cmmigrate/v1/ScopedPath';

export interface RootJournal {
  'root'?: (string);
  'since'?: (_cmmigrate_v1_JournalPosition | null);
  'changed'?: (_cmmigrate_v1_ScopedPath)[];
  'sender_identity'?: (string);
  'last_try'?: (boolean);
}

export interface RootJournal__Output {
  'root': (string);
  'since': (_cmmigrate_v1_JournalPosition__Output | null);
  'changed': (_cmmigrate_v1_ScopedPath__Output)[];
  'sender_identity': (string);
  'last_try': (boolean);
}
