/**
 * One bridged connection (agent/bridge/pipe.ts) on both of its read paths: the pooled
 * `onread` path the agent takes on Node 18.19 and 20, and pipe(), the path of a runtime
 * without net's onread keys. Each carries bytes both ways exactly, passes each side's FIN
 * on while the other direction stays open, and reports its close once.
 */
import * as crypto from 'node:crypto';
import { once } from 'node:events';
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../agent/bridge/limits';
import { chunkCount, Pipe } from '../agent/bridge/pipe';

const closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

/** A server on 127.0.0.1 that answers with the SHA-256 of all it read, after the client's FIN, then sends `tail` and ends. */
async function digestServer(tail: Buffer): Promise<number> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    const h = crypto.createHash('sha256');
    s.on('data', (d) => h.update(d));
    s.on('end', () => {
      s.write(h.digest());
      s.end(tail);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  closers.push(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

async function bridged(pooledReads: boolean, upload: Buffer, tail: Buffer): Promise<{ pipe: Pipe; answer: Buffer; closes: number }> {
  const targetPort = await digestServer(tail);
  let pipe: Pipe | undefined;
  let closes = 0;
  let pipeClosed!: () => void;
  const bridgeDone = new Promise<void>((resolve) => (pipeClosed = resolve));
  const front = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (client) => {
    const onClosed = (): void => {
      closes++;
      pipeClosed();
    };
    pipe = new Pipe(client, '127.0.0.1', targetPort, DEFAULT_LIMITS, () => undefined, () => undefined, onClosed, pooledReads);
  });
  front.listen(0, '127.0.0.1');
  closers.push(() => front.close());
  await once(front, 'listening');
  const c = net.connect({ host: '127.0.0.1', port: (front.address() as net.AddressInfo).port, allowHalfOpen: true });
  const chunks: Buffer[] = [];
  c.on('data', (d: Buffer) => chunks.push(d));
  const ended = once(c, 'end').then(() => c.end());
  c.end(upload);
  await Promise.all([ended, bridgeDone]);
  return { pipe: pipe!, answer: Buffer.concat(chunks), closes };
}

describe('bridge pipe', () => {
  for (const pooledReads of [true, false]) {
    it(`carries bytes both ways with half-close on the ${pooledReads ? 'pooled onread' : 'pipe()'} path`, async () => {
      const upload = crypto.randomBytes(8 * 1024 * 1024 + 123);
      const tail = crypto.randomBytes(3 * 1024 * 1024 + 7);
      const { pipe, answer, closes } = await bridged(pooledReads, upload, tail);
      expect(pipe.pooled).toBe(pooledReads);
      // The server saw every byte in order (its digest), and the client got the server's bytes after its own FIN.
      expect(answer.subarray(0, 32).toString('hex')).toBe(crypto.createHash('sha256').update(upload).digest('hex'));
      expect(answer.subarray(32).equals(tail)).toBe(true);
      expect(pipe.bytesToTarget()).toBe(upload.length);
      expect(pipe.bytesFromTarget()).toBe(32 + tail.length);
      await new Promise((r) => setTimeout(r, 50));
      expect(closes).toBe(1);
    });
  }

  it('reuses its chunks on the pooled path: moving 8 times the bytes makes no more of them', async () => {
    const made = async (mib: number): Promise<number> => {
      const before = chunkCount.made;
      const { answer } = await bridged(true, crypto.randomBytes(mib * 1024 * 1024), Buffer.alloc(0));
      expect(answer.length).toBe(32);
      return chunkCount.made - before;
    };
    await made(1); // the pool fills once
    const small = await made(4);
    const big = await made(32);
    // 32 MiB is 512 reads of 64 KiB: a fresh buffer per read would make hundreds.
    expect(big).toBeLessThanOrEqual(small + 8);
    expect(big).toBeLessThan(32);
  });
});
