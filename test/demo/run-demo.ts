/**
 * `npm run demo`: a rehearsal on one machine. It generates a relay tree, makes the plan and
 * the TLS material with `cmmigrate init`, starts two real agents on 127.0.0.2 and 127.0.0.3
 * with separate roots (the relay's users have other ids on the new root), and runs the
 * commands an operator would: sync initial, sync final, verify.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { CONTROLLER_CLI, setupMigration } from '../support/harness';
import { formatBytes } from '../../controller/output';

function run(cwd: string, args: string[]): Promise<number | null> {
  process.stdout.write(`\n[$ cmmigrate ${args.join(' ')}]\n`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CONTROLLER_CLI, ...args], { cwd, stdio: 'inherit' });
    child.on('error', reject);
    child.on('close', resolve);
  });
}

async function main(): Promise<void> {
  const keep = process.argv.includes('--keep');
  const addresses = Number(process.env.DEMO_ADDRESSES ?? 100);
  console.log(`cmmigrate demo: generating a relay with ${addresses} addresses ...`);
  const m = await setupMigration({ tree: { addresses, messagesPerAddress: 20, seed: 7 } });
  let failed = false;
  try {
    console.log(`old host root: ${m.oldRoot} (agent ${m.oldAddress})`);
    console.log(`new host root: ${m.newRoot} (agent ${m.newAddress})`);
    console.log(`generated: ${m.stats.files} files, ${formatBytes(m.stats.bytes)}, ${m.stats.hardlinks} hard links, ${m.stats.fifos} FIFOs, ${m.stats.sockets} socket`);
    const plan = path.relative(m.dir, m.plan);
    for (const args of [
      ['sync', '--plan', plan, '--phase', 'initial'],
      ['sync', '--plan', plan, '--phase', 'final'],
      ['verify', '--plan', plan],
    ]) {
      const code = await run(m.dir, args);
      if (code !== 0) {
        failed = true;
        console.error(`demo: cmmigrate ${args[0]} exited with ${code}`);
        break;
      }
    }
  } finally {
    if (keep) {
      await Promise.all([m.old.stop(), m.new.stop()]);
      console.log(`\nkept ${m.dir} (the plan, the TLS material and both roots)`);
    } else {
      await m.close();
    }
  }
  if (failed) process.exit(1);
  console.log('\ndemo: done — the new root holds the old relay\'s state, verified entry by entry.');
}

main().catch((err) => {
  console.error('demo failed:', err);
  process.exit(1);
});
