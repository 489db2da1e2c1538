// Original file: proto/cmmigrate.proto


export interface Scope {
  'mailboxes_dir'?: (string);
  'roots'?: (string)[];
}

export interface Scope__Output {
  'mailboxes_dir': (string);
  'roots': (string)[];
}
