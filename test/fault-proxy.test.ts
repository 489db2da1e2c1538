/**
 * test/support/fault-proxy.ts, the one TCP relay of the tests and the bench (issue 11): its
 * per-direction delay, with a real echo server on loopback.
 */
import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultProxy } from './support/fault-proxy';

/**
 * Sends `data` through `port` and resolves with the echo and how long its first byte took;
 * `halfClose`: ends its side after the data and waits for the echo's end.
 */
function roundTrip(port: number, data: Buffer, halfClose: boolean): Promise<{ echo: Buffer; firstMs: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let firstMs = -1;
    const chunks: Buffer[] = [];
    let got = 0;
    const done = (): void => {
      s.destroy();
      resolve({ echo: Buffer.concat(chunks), firstMs });
    };
    const s = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true }, () => (halfClose ? s.end(data) : s.write(data)));
    s.on('data', (b: Buffer) => {
      if (firstMs < 0) firstMs = performance.now() - started;
      chunks.push(b);
      got += b.length;
      if (!halfClose && got >= data.length) done();
    });
    s.on('end', done);
    s.on('error', reject);
  });
}

describe('the fault proxy', () => {
  let echo: net.Server;
  let port: number;
  beforeAll(async () => {
    // Echoes everything, and ends its side once the client ended its own.
    echo = net.createServer({ allowHalfOpen: true }, (c) => {
      c.on('data', (b) => c.write(b));
      c.on('end', () => c.end());
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    port = (echo.address() as net.AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => echo.close(() => resolve())));

  it('delays each direction by its own amount, keeps the bytes in order and carries the end of stream', async () => {
    const data = Buffer.alloc(256 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    for (const [up, down] of [
      [0, 300],
      [300, 0],
    ]) {
      const proxy = await startFaultProxy({ listenHost: '127.0.0.1', targetHost: '127.0.0.1', targetPort: port, delayMs: { up, down } });
      try {
        const r = await roundTrip(proxy.port, data, true);
        expect([r.echo.length, r.echo.equals(data)]).toEqual([data.length, true]);
        expect(r.firstMs).toBeGreaterThanOrEqual(290);
        expect(proxy.down).toBe(data.length);
      } finally {
        await proxy.close();
      }
    }
  });

  it('without a delay, answers at once', async () => {
    const proxy = await startFaultProxy({ listenHost: '127.0.0.1', targetHost: '127.0.0.1', targetPort: port });
    try {
      const r = await roundTrip(proxy.port, Buffer.from('hello'), false);
      expect(r.echo.toString()).toBe('hello');
    } finally {
      await proxy.close();
    }
  });
});
