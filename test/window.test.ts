/**
 * The receive window and the chunk sizes (issue 15, point 5). The receiving agent pulls
 * with a 16 MiB HTTP/2 window (the reason the receiver pulls: grpc-js pins a server's
 * window at 64 KiB): a plain HTTP/2 server with the old agent's certificate stands in for
 * the sender and reads the SETTINGS and WINDOW_UPDATE the real receiving agent sends it.
 * The real sender cuts its Fetch answer into messages of 256 KiB to 1 MiB; only the last,
 * or one sent while the sender waits for the receiver to name more files, is shorter: a
 * client with the new agent's certificate reads them one by one.
 */
import * as fs from 'node:fs/promises';
import * as http2 from 'node:http2';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unpackEntries } from '../agent/wire/packed-entries';
import { agentClient, clientChannelOptions, type ListBatch } from '../proto';
import { setupMigration, type Migration } from './support/harness';

const KIB = 1024;
const MIB = 1024 * KIB;

describe('receive window and chunk sizes', { timeout: 60_000 }, () => {
  let m: Migration;
  let tlsDir: string;
  beforeAll(async () => {
    m = await setupMigration({ tree: { addresses: 4, messagesPerAddress: 120 } });
    tlsDir = path.join(m.dir, '.cmmigrate', 'tls');
  }, 60_000);
  afterAll(async () => {
    await m?.close();
  });

  it('the receiving agent announces a 16 MiB stream window and opens its connection window to 16 MiB', async () => {
    const read = (f: string): Promise<Buffer> => fs.readFile(path.join(tlsDir, 'old', f));
    const server = http2.createSecureServer({ ca: await read('ca.crt'), cert: await read('agent.crt'), key: await read('agent.key'), requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['h2'] });
    const seen: { initialWindowSize?: number; connectionWindow?: number } = {};
    const gotStream = new Promise<void>((resolve) => {
      server.on('stream', (stream, headers) => {
        const session = stream.session!;
        seen.initialWindowSize = session.remoteSettings.initialWindowSize;
        seen.connectionWindow = session.state.remoteWindowSize;
        expect(headers[':path']).toBe('/cmmigrate.v1.Agent/List');
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '14', 'grpc-message': 'window test' }, { endStream: true });
        resolve();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.2', () => resolve()));
    const address = `127.0.0.2:${(server.address() as { port: number }).port}`;
    try {
      const plan = path.join(m.dir, 'window.toml');
      await fs.writeFile(plan, (await fs.readFile(m.plan, 'utf8')).replace(`"${m.oldAddress}"`, `"${address}"`));
      const r = await m.cli(['sync', '--plan', plan, '--phase', 'initial'], 30_000);
      await gotStream;
      expect(r.code).not.toBe(0);
      expect(seen.initialWindowSize).toBe(16 * MIB);
      // The WINDOW_UPDATE follows the client's SETTINGS: by the first request the connection window is open.
      expect(seen.connectionWindow).toBeGreaterThanOrEqual(16 * MIB - 64 * KIB);
    } finally {
      server.close();
    }
  });

  it('the sender\'s Fetch messages carry 256 KiB to 1 MiB each; only the last is shorter', async () => {
    const read = (f: string): Promise<Buffer> => fs.readFile(path.join(tlsDir, 'new', f));
    const c = agentClient(m.oldAddress, grpc.credentials.createSsl(await read('ca.crt'), await read('agent.key'), await read('agent.crt')), clientChannelOptions(true));
    try {
      const scope = { roots: ['mailboxes'], mailboxes_dir: '/home/vmail/mail' };
      const files: { path: string; size: string; mtime_ns: string }[] = [];
      for await (const b of c.List({ phase: 'INITIAL', scope }, { deadline: Date.now() + 20_000 }) as AsyncIterable<ListBatch>) {
        const entries = b.packed?.length ? unpackEntries(Buffer.from(b.packed)) : (b.entries ?? []);
        for (const e of entries) if (e.type === 'file' && !e.leader) files.push({ path: e.path!, size: String(e.size), mtime_ns: String(e.mtime_ns) });
      }
      expect(files.length).toBeGreaterThan(100);
      const call = c.Fetch({ deadline: Date.now() + 20_000 });
      call.write({ phase: 'INITIAL', scope, items: [] });
      // Every want in one message: the sender never waits for the receiver, so only the
      // last message may be short.
      call.write({ items: files });
      call.end();
      const sizes: number[] = [];
      for await (const msg of call as AsyncIterable<{ data: Buffer }>) sizes.push(msg.data.length);
      expect(sizes.length).toBeGreaterThan(4);
      const last = sizes.pop()!;
      expect(last).toBeGreaterThan(0);
      expect(last).toBeLessThanOrEqual(MIB);
      // Every other message holds 256 KiB to 1 MiB (agent/send/chunker.ts): a slow read or the
      // tail of a 1 MiB cut does not send a short one.
      for (const n of sizes) {
        expect(n, JSON.stringify(sizes)).toBeLessThanOrEqual(MIB);
        expect(n, JSON.stringify(sizes)).toBeGreaterThanOrEqual(256 * KIB);
      }
    } finally {
      c.close();
    }
  });
});
