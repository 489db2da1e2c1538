/**
 * The bridge's state file, `<stateDir>/bridge.json`: what is bridged (addresses, ports,
 * target, limits, start time) and the counters so far. It is written to a temp file,
 * fsynced and renamed, then the directory is fsynced, so a crash or SIGKILL leaves either
 * the old or the new file, never a torn one; an agent that restarts finds it and resumes.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { CmError } from '../../proto/errors';
import { resolveLimits, type BridgeLimits } from './limits';
import type { SavedPortStats } from './stats';

/** The state file's name inside the state directory. */
export const STATE_FILE = 'bridge.json';
const VERSION = 1;

/** What is bridged: where the bridge listens and where it passes connections to. */
export interface BridgeConfig {
  /** Addresses to listen on (IPv4 or IPv6 literals): the old host's public addresses. */
  listen: string[];
  /** TCP ports, each passed to the same port of `target`. */
  ports: number[];
  /** The new host's address (IP literal). */
  target: string;
  limits: BridgeLimits;
}

/** The state file's content. */
export interface BridgeState {
  version: number;
  config: BridgeConfig;
  startedMs: number;
  /** When `stats` was taken. */
  savedMs: number;
  stats: SavedPortStats[];
}

/** The state file's path in `stateDir`. */
export function statePath(stateDir: string): string {
  return path.join(stateDir, STATE_FILE);
}

/** Writes the state atomically (temp file, fsync, rename, fsync of the directory). */
export function writeState(stateDir: string, state: BridgeState): void {
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const final = statePath(stateDir);
  const tmp = path.join(stateDir, `.${STATE_FILE}.${process.pid}.tmp`);
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, JSON.stringify(state, null, 1) + '\n');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, final);
  const dir = fs.openSync(stateDir, 'r');
  try {
    fs.fsyncSync(dir);
  } finally {
    fs.closeSync(dir);
  }
}

/** Removes the state file (the bridge was stopped on purpose); a missing file is fine. */
export function clearState(stateDir: string): void {
  fs.rmSync(statePath(stateDir), { force: true });
}

/** The state in `stateDir`, or null when there is none; a file that does not parse is an error naming it. */
export function readState(stateDir: string): BridgeState | null {
  const file = statePath(stateDir);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const bad = (why: string, cause?: unknown): CmError =>
    new CmError('bridge.bad_state', `bridge state file ${file} ${why}`, {
      cause,
      hint: `remove ${file} and start the bridge again (cmmigrate bridge stop, then run --bridge)`,
    });
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw bad('is not JSON', err);
  }
  const s = raw as Partial<BridgeState>;
  if (!s || typeof s !== 'object' || s.version !== VERSION) throw bad(`has no version ${VERSION}`);
  if (!s.config || typeof s.config !== 'object') throw bad('has no config');
  let config: BridgeConfig;
  try {
    config = checkConfig(s.config);
  } catch (err) {
    throw bad(`holds a bad config: ${(err as Error).message}`, err);
  }
  return {
    version: VERSION,
    config,
    startedMs: typeof s.startedMs === 'number' ? s.startedMs : Date.now(),
    savedMs: typeof s.savedMs === 'number' ? s.savedMs : 0,
    stats: Array.isArray(s.stats) ? s.stats.filter(isSavedStats) : [],
  };
}

const isCount = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v) && v >= 0;

/** Counters from the file are kept only when every field has its type (a hand-edited file loses them, not the bridge). */
function isSavedStats(p: unknown): p is SavedPortStats {
  const x = p as Partial<SavedPortStats> | null;
  return (
    !!x &&
    typeof x === 'object' &&
    isCount(x.port) &&
    (['total', 'refused', 'targetFailed', 'idleClosed', 'bytesToTarget', 'bytesFromTarget'] as const).every((k) => isCount(x[k])) &&
    (x.lastConnectionMs === null || isCount(x.lastConnectionMs)) &&
    !!x.perMinute &&
    isCount(x.perMinute.startMs) &&
    Array.isArray(x.perMinute.counts) &&
    x.perMinute.counts.length <= 60 &&
    x.perMinute.counts.every(isCount)
  );
}

function badConfig(message: string): CmError {
  return new CmError('bridge.bad_config', message, { hint: 'check the plan\'s old and new host addresses and the bridged ports' });
}

/**
 * A config with every field checked: IP literals only (no names to resolve while mail is
 * off), ports 1-65535 without repeats, a target that is not one of the listen addresses
 * (a bridge to itself would loop), limits with defaults filled in.
 */
export function checkConfig(c: { listen?: unknown; ports?: unknown; target?: unknown; limits?: Partial<BridgeLimits> }): BridgeConfig {
  if (!Array.isArray(c.listen) || c.listen.length === 0) throw badConfig('bridge needs at least one listen address');
  const listen = c.listen.map((a) => {
    if (typeof a !== 'string' || net.isIP(a) === 0) throw badConfig(`bridge listen address ${JSON.stringify(a)} is not an IP address`);
    return a;
  });
  if (new Set(listen).size !== listen.length) throw badConfig('bridge listen addresses repeat');
  if (!Array.isArray(c.ports) || c.ports.length === 0) throw badConfig('bridge needs at least one port');
  const ports = c.ports.map((p) => {
    if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > 65535) throw badConfig(`bridge port ${JSON.stringify(p)} is not a TCP port`);
    return p;
  });
  if (new Set(ports).size !== ports.length) throw badConfig('bridge ports repeat');
  const target = c.target;
  if (typeof target !== 'string' || net.isIP(target) === 0) throw badConfig(`bridge target ${JSON.stringify(target)} is not an IP address`);
  if (target === '0.0.0.0' || target === '::') throw badConfig(`bridge target ${target} is not a host`);
  if (listen.includes(target)) throw badConfig(`bridge target ${target} is also a listen address: the bridge would connect to itself`);
  return { listen, ports, target, limits: resolveLimits(c.limits) };
}
