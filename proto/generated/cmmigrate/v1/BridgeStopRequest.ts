// Original file: proto/cmmigrate.proto


export interface BridgeStopRequest {
}

export interface BridgeStopRequest__Output {
}
