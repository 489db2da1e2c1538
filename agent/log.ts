/** The agent's structured log: pino, JSON lines on stderr. Never mail, hashes or keys. */
import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(level = 'info'): Logger {
  return pino({ name: 'cmmigrate-agent', level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: true }));
}
