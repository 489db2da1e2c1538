// Original file: proto/cmmigrate.proto


export interface BridgeMinutes {
  'start_ms'?: (string);
  'counts'?: (number)[];
}

export interface BridgeMinutes__Output {
  'start_ms': (string);
  'counts': (number)[];
}
