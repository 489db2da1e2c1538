// Original file: proto/cmmigrate.proto

export const Phase = {
  PHASE_UNSPECIFIED: 'PHASE_UNSPECIFIED',
  INITIAL: 'INITIAL',
  FINAL: 'FINAL',
} as const;

export type Phase =
  | 'PHASE_UNSPECIFIED'
  | 0
  | 'INITIAL'
  | 1
  | 'FINAL'
  | 2

export type Phase__Output = typeof Phase[keyof typeof Phase]
