/**
 * The Info call: what an agent tells the controller about itself and its host.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { PROTOCOL_VERSION, ROOTS, VERSION, type InfoReply } from '../../proto';
import { resolveRoots, type AgentRoots } from '../fs/paths';

/** What the controller learns of an agent before a run: version, host, roots present, free space. */
export async function agentInfo(roots: AgentRoots, role: string): Promise<InfoReply> {
  const all = resolveRoots(roots, ROOTS.map((r) => r.name), roots.mailboxesDir);
  const present = await Promise.all(all.map((r) => fs.lstat(r.abs).then(() => true, () => false)));
  let osName = '';
  try {
    const text = await fs.readFile(path.join(roots.root, 'etc/os-release'), 'utf8');
    osName = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(text)?.[1] ?? '';
  } catch {
    /* no os-release under --root */
  }
  let free = 0;
  for (let p = path.join(roots.root, roots.mailboxesDir); ; p = path.dirname(p)) {
    try {
      const s = await fs.statfs(p);
      free = s.bavail * s.bsize;
      break;
    } catch {
      if (p === path.dirname(p)) break;
    }
  }
  return {
    version: VERSION,
    protocol: PROTOCOL_VERSION,
    hostname: os.hostname(),
    os: osName,
    node: process.version,
    root: roots.root,
    roots: all.map((r, i) => ({ name: r.name, path: '/' + r.rel, present: present[i] })),
    free_bytes: String(free),
    role,
  };
}
