/**
 * User and group names of a host, read from `<root>/etc/passwd` and `<root>/etc/group`.
 * Ownership travels by name because the relay's system users get different ids per host.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { CmError } from '../../proto';

export interface Identity {
  userName(uid: number): string | undefined;
  groupName(gid: number): string | undefined;
  uid(name: string): number | undefined;
  gid(name: string): number | undefined;
  /**
   * A digest of every name and id: two reads of a host with the same digest name every
   * owner alike (a pass that lists only what changed relies on it).
   */
  readonly digest?: string;
}

/** Parse the colon-separated name:x:id:... format of passwd and group. */
export function parseIdFile(text: string): Map<string, number> {
  const byName = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const fields = line.split(':');
    if (fields.length < 3) continue;
    const id = Number(fields[2]);
    if (!fields[0] || !Number.isInteger(id) || id < 0) continue;
    if (!byName.has(fields[0])) byName.set(fields[0], id);
  }
  return byName;
}

class MapIdentity implements Identity {
  private readonly uidToName = new Map<number, string>();
  private readonly gidToName = new Map<number, string>();
  readonly digest: string;
  constructor(
    private readonly users: Map<string, number>,
    private readonly groups: Map<string, number>,
  ) {
    for (const [n, id] of users) if (!this.uidToName.has(id)) this.uidToName.set(id, n);
    for (const [n, id] of groups) if (!this.gidToName.has(id)) this.gidToName.set(id, n);
    const h = createHash('sha256');
    for (const [n, id] of [...users].sort()) h.update(`u ${n} ${id}\n`);
    for (const [n, id] of [...groups].sort()) h.update(`g ${n} ${id}\n`);
    this.digest = h.digest('hex').slice(0, 32);
  }
  userName(uid: number): string | undefined {
    return this.uidToName.get(uid);
  }
  groupName(gid: number): string | undefined {
    return this.gidToName.get(gid);
  }
  uid(name: string): number | undefined {
    return this.users.get(name);
  }
  gid(name: string): number | undefined {
    return this.groups.get(name);
  }
}

/** Read the host's names under `root`. Read anew for every pass: step 2 adds users. */
export async function loadIdentity(root: string): Promise<Identity> {
  const read = async (rel: string): Promise<string> => {
    const file = path.join(root, rel);
    try {
      return await fs.readFile(file, 'utf8');
    } catch (err) {
      throw new CmError('agent.identity_unreadable', `cannot read ${file}: ${(err as Error).message}`, {
        hint: 'the agent reads user and group names from <root>/etc/passwd and <root>/etc/group; check --root',
        cause: err,
      });
    }
  };
  const [passwd, group] = await Promise.all([read('etc/passwd'), read('etc/group')]);
  return new MapIdentity(parseIdFile(passwd), parseIdFile(group));
}

/** The name of an id, or `#<id>` when the host has no name for it. */
export function nameOr(id: number, name: string | undefined): string {
  return name ?? `#${id}`;
}

/** Owner names by id over a walk, each looked up once: most entries share a few owners. */
export class OwnerNames {
  private readonly users = new Map<number, string>();
  private readonly groups = new Map<number, string>();

  constructor(private readonly identity: Identity) {}

  user(uid: number): string {
    let name = this.users.get(uid);
    if (name === undefined) this.users.set(uid, (name = nameOr(uid, this.identity.userName(uid))));
    return name;
  }

  group(gid: number): string {
    let name = this.groups.get(gid);
    if (name === undefined) this.groups.set(gid, (name = nameOr(gid, this.identity.groupName(gid))));
    return name;
  }
}
