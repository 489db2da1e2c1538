// Original file: proto/cmmigrate.proto


export interface BridgeStatusRequest {
}

export interface BridgeStatusRequest__Output {
}
