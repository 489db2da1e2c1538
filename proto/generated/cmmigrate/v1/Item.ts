// Original file: proto/cmmigrate.proto


export interface Item {
  'op'?: (string);
  'path'?: (string);
  'from'?: (string);
  'what'?: (string);
}

export interface Item__Output {
  'op': (string);
  'path': (string);
  'from': (string);
  'what': (string);
}
