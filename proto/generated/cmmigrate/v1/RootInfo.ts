// Original file: proto/cmmigrate.proto


export interface RootInfo {
  'name'?: (string);
  'path'?: (string);
  'present'?: (boolean);
}

export interface RootInfo__Output {
  'name': (string);
  'path': (string);
  'present': (boolean);
}
