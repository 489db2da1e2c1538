// Original file: proto/cmmigrate.proto


export interface BridgeLimits {
  'max_connections'?: (number);
  'max_per_source'?: (number);
  'per_port'?: ({[key: number]: number});
  'per_port_set'?: (boolean);
  'idle_timeout_ms'?: (number);
  'connect_timeout_ms'?: (number);
  'high_water_mark'?: (number);
}

export interface BridgeLimits__Output {
  'max_connections': (number);
  'max_per_source': (number);
  'per_port': ({[key: number]: number});
  'per_port_set': (boolean);
  'idle_timeout_ms': (number);
  'connect_timeout_ms': (number);
  'high_water_mark': (number);
}
