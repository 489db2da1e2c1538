// Original file: proto/cmmigrate.proto


export interface HostOpRequest {
  'op'?: (string);
  'units'?: (string)[];
  'input'?: (string);
}

export interface HostOpRequest__Output {
  'op': (string);
  'units': (string)[];
  'input': (string);
}
