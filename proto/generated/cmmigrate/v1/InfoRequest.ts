// Original file: proto/cmmigrate.proto


export interface InfoRequest {
}

export interface InfoRequest__Output {
}
