// Original file: proto/cmmigrate.proto


export interface ScopedPath {
  'path'?: (string);
  'scope'?: (string);
  'content'?: (boolean);
}

export interface ScopedPath__Output {
  'path': (string);
  'scope': (string);
  'content': (boolean);
}
