// Original file: proto/cmmigrate.proto


export interface UnitState {
  'unit'?: (string);
  'state'?: (string);
}

export interface UnitState__Output {
  'unit': (string);
  'state': (string);
}
