// Original file: proto/cmmigrate.proto


export interface OwnerRule {
  'root'?: (string);
  'user'?: (string);
  'group'?: (string);
}

export interface OwnerRule__Output {
  'root': (string);
  'user': (string);
  'group': (string);
}
