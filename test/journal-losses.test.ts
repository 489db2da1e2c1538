/**
 * When the change journal may have missed a change, it says so: changesSince answers
 * `full` with the reason (issue 25: "when in doubt, walk"). The helper killed, the kernel
 * queue overflowed, a sync that timed out, the agent restarted, a root mounted over or
 * replaced, a filesystem that cannot be watched, no python3, no fanotify for the helper.
 * And once the journal has recovered (a new epoch, a later sync), it is precise again.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChangeJournal } from '../agent/journal/journal';
import { after, changes, full, mountTmpfs, sh, startJournal, until } from './support/journal-fixture';

let tmp: { dir: string; unmount: () => Promise<void> };
let mail: string;
let spool: string;
let state: string;
const TIME = /at \d\d:\d\d:\d\d UTC/;

beforeAll(async () => {
  tmp = await mountTmpfs('cmm-journal-losses-');
  mail = path.join(tmp.dir, 'mail');
  spool = path.join(tmp.dir, 'spool');
  state = path.join(tmp.dir, 'state');
  await fs.mkdir(path.join(mail, 'u/cur'), { recursive: true });
  await fs.mkdir(path.join(spool, 'active'), { recursive: true });
});

afterAll(async () => {
  await tmp?.unmount();
});

/** Debian 12's python3 (3.11), which the agent's hosts have; the other tests take python3 from PATH. */
const DEBIAN_PYTHON = '/usr/bin/python3';

/** A journal over mail and spool, its helper under Debian's python3, closed after `body`. */
async function withJournal(body: (j: ChangeJournal) => Promise<void>, opts: Parameters<typeof startJournal>[2] = {}): Promise<void> {
  const j = await startJournal({ mailboxes: mail, spool }, state, { python: DEBIAN_PYTHON, ...opts });
  try {
    await body(j);
  } finally {
    await j.close();
  }
}

const helperPid = (j: ChangeJournal): number => {
  const pid = j.status().pid;
  expect(pid, JSON.stringify(j.status())).toBeTypeOf('number');
  return pid!;
};

describe('the helper gone', () => {
  it('SIGKILL: full with the reason, then a new epoch that is precise again', async () => {
    await withJournal(async (j) => {
      const from = await j.sync();
      const epoch = j.epoch;
      process.kill(helperPid(j), 'SIGKILL');
      await until(() => j.status().ended !== undefined);
      await sh(': > u/cur/during', mail);
      expect(full(j.changesSince('mailboxes', from))).toMatch(/^journal: helper killed by SIGKILL at \d\d:\d\d:\d\d UTC$/);
      const pos = await j.sync();
      expect(j.epoch).not.toBe(epoch);
      expect(pos.epoch).toBe(j.epoch);
      expect(full(j.changesSince('mailboxes', from))).toMatch(/helper killed by SIGKILL/);
      const { list } = await after(j, 'mailboxes', pos, () => sh(': > u/cur/later', mail));
      expect(list).toEqual(['entry u/cur', 'entry u/cur/later']);
    });
  });

  it('an agent restart: a position of the old journal gets full', async () => {
    let old: Awaited<ReturnType<ChangeJournal['sync']>> | undefined;
    await withJournal(async (j) => {
      old = await j.sync();
    });
    await withJournal(async (j) => {
      expect(full(j.changesSince('mailboxes', old!))).toMatch(/^journal: the agent restarted since that position/);
      const pos = await j.sync();
      expect(changes(j.changesSince('mailboxes', pos))).toEqual([]);
    });
  });

  it('no python3: full with the reason, and every sync tries again', async () => {
    await withJournal(
      async (j) => {
        expect(j.status().ended).toBe('journal: /nonexistent/python3 not found');
        const pos = await j.sync();
        expect(full(j.changesSince('mailboxes', pos))).toBe('journal: /nonexistent/python3 not found');
      },
      { python: '/nonexistent/python3' },
    );
  });

  it('fanotify refused (the helper not root): the helper exits with code 3 and says why', async () => {
    const wrapper = path.join(tmp.dir, 'python-as-nobody');
    await fs.writeFile(wrapper, `#!/bin/sh\nexec setpriv --reuid=65534 --regid=65534 --clear-groups ${DEBIAN_PYTHON} "$@"\n`, { mode: 0o755 });
    await withJournal(
      async (j) => {
        expect(j.status().ended).toMatch(/^journal: helper exited \(code 3: fanotify unsupported: watching a whole filesystem needs root .*EPERM.*\) at/);
        const pos = await j.sync();
        expect(full(j.changesSince('spool', pos))).toMatch(/fanotify unsupported/);
      },
      { python: wrapper },
    );
  });
});

describe('events lost in the kernel', () => {
  it('a queue overflow (helper stopped, more files than the queue holds): full until a sync after it', async () => {
    // 16,384 events here; more files than that, whatever the machine's setting.
    const files = Number((await fs.readFile('/proc/sys/fs/fanotify/max_queued_events', 'utf8')).trim()) + 20_000;
    await withJournal(async (j) => {
      const from = await j.sync();
      const pid = helperPid(j);
      process.kill(pid, 'SIGSTOP');
      try {
        await sh(`mkdir flood && cd flood && i=0; while [ $i -lt ${files} ]; do : > f$i; i=$((i+1)); done`, spool);
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      const first = await j.sync();
      expect(full(j.changesSince('spool', from))).toMatch(/^journal: the kernel's event queue overflowed at \d\d:\d\d:\d\d UTC$/);
      expect(full(j.changesSince('mailboxes', from))).toMatch(/overflowed/);
      // The first sync after may have raced the overflow; a later one is clean.
      const pos = await j.sync();
      expect(full(j.changesSince('spool', first))).toMatch(/overflowed/);
      const { list } = await after(j, 'spool', pos, () => sh(': > active/A1', spool));
      expect(list).toEqual(['entry active', 'entry active/A1']);
      await fs.rm(path.join(spool, 'flood'), { recursive: true });
    });
  });

  it('a sync that times out (helper stopped): full until a sync after it', async () => {
    await withJournal(
      async (j) => {
        const from = await j.sync();
        const pid = helperPid(j);
        process.kill(pid, 'SIGSTOP');
        let stuck;
        try {
          await sh(': > u/cur/while-stopped', mail);
          stuck = await j.sync();
        } finally {
          process.kill(pid, 'SIGCONT');
        }
        expect(full(j.changesSince('mailboxes', from))).toMatch(/^journal: sync timed out after 0.3 s at .* \(the helper did not report its cookie\)$/);
        const pos = await j.sync();
        expect(full(j.changesSince('mailboxes', stuck))).toMatch(/sync timed out/);
        expect(changes(j.changesSince('mailboxes', pos))).toEqual([]);
      },
      { syncTimeoutMs: 300 },
    );
  });
});

describe('roots changed behind the journal', () => {
  it('a root bind-mounted over: full, for every position, until the journal restarts', async () => {
    const other = path.join(tmp.dir, 'other-spool');
    await fs.mkdir(other, { recursive: true });
    await withJournal(async (j) => {
      const from = await j.sync();
      execFileSync('mount', ['--bind', other, spool]);
      let pos;
      try {
        pos = await j.sync();
        await sh(': > in-other', spool);
        await j.sync();
      } finally {
        execFileSync('umount', [spool]);
      }
      expect(full(j.changesSince('spool', from))).toMatch(new RegExp(`^journal: the mounts at, above or under ${spool} changed since the journal started`));
      expect(full(j.changesSince('spool', pos))).toMatch(/mounts/);
      expect(changes(j.changesSince('mailboxes', from))).toEqual([]);
      await j.restart();
      const fresh = await j.sync();
      expect(full(j.changesSince('spool', pos))).toMatch(/^journal: the journal restarted at/);
      const { list } = await after(j, 'spool', fresh, () => sh(': > active/A2', spool));
      expect(list).toEqual(['entry active', 'entry active/A2']);
    });
  });

  it('a root removed and made anew: full for positions before, precise after', async () => {
    await withJournal(async (j) => {
      const from = await j.sync();
      await sh(`rm -rf ${spool} && mkdir -p ${spool}/active && : > ${spool}/active/A3`, tmp.dir);
      const pos = await j.sync();
      expect(full(j.changesSince('spool', from))).toMatch(new RegExp(`^journal: ${spool} changed|^journal: ${spool} was replaced`));
      expect(changes(j.changesSince('mailboxes', from))).toEqual([]);
      const { list } = await after(j, 'spool', pos, () => sh(': > active/A4', spool));
      expect(list).toEqual(['entry active', 'entry active/A4']);
    });
  });

  it('a directory above a root renamed: full for that root', async () => {
    const deep = path.join(tmp.dir, 'deep/a/mail');
    await fs.mkdir(path.join(deep, 'x'), { recursive: true });
    const j = await startJournal({ mailboxes: deep }, state);
    try {
      const from = await j.sync();
      await sh('mv a a2 && mkdir -p a/mail/x && : > a2/mail/x/moved-away', path.join(tmp.dir, 'deep'));
      await j.sync();
      expect(full(j.changesSince('mailboxes', from))).toMatch(new RegExp(`^journal: ${path.join(tmp.dir, 'deep/a')} changed \\(mask 40000040\\) at`));
    } finally {
      await j.close();
    }
  });

  it('a root that is a file mounted on its own (a bind mount of one file): full', async () => {
    const key = path.join(tmp.dir, 'mailserver.key');
    const source = path.join(tmp.dir, 'elsewhere.key');
    await fs.writeFile(key, 'k');
    await fs.writeFile(source, 'k2');
    execFileSync('mount', ['--bind', source, key]);
    try {
      const j = await startJournal({ mailboxes: mail, 'ssl-key': key }, state);
      try {
        const from = await j.sync();
        expect(full(j.changesSince('ssl-key', from))).toBe(`journal: ${key} is a file mounted on its own; the journal cannot follow it`);
        expect(changes(j.changesSince('mailboxes', from))).toEqual([]);
      } finally {
        await j.close();
      }
    } finally {
      execFileSync('umount', [key]);
    }
  });

  it('a root on a filesystem that cannot be watched (ramfs): that root is full, the others are not', async () => {
    const ram = path.join(tmp.dir, 'ram');
    await fs.mkdir(ram, { recursive: true });
    execFileSync('mount', ['-t', 'ramfs', 'ramfs', ram]);
    try {
      const j = await startJournal({ mailboxes: mail, acme: ram }, state);
      try {
        const from = await j.sync();
        expect(full(j.changesSince('acme', from))).toMatch(new RegExp(`^journal: cannot watch ${ram}: the filesystem (has no fsid|does not support file handles)`));
        const { list } = await after(j, 'mailboxes', from, () => sh(': > u/cur/ok', mail));
        expect(list).toEqual(['entry u/cur', 'entry u/cur/ok']);
      } finally {
        await j.close();
      }
      // The cookie directory there: the helper cannot sync at all, and exits with code 4.
      const k = await startJournal({ mailboxes: mail }, path.join(ram, 'state'));
      try {
        expect(k.status().ended).toMatch(/^journal: helper exited \(code 4: cannot watch the cookie directory .*\) at/);
      } finally {
        await k.close();
      }
    } finally {
      execFileSync('umount', [ram]);
    }
  });
});

it('the reasons carry the time', async () => {
  await withJournal(async (j) => {
    const from = await j.sync();
    process.kill(helperPid(j), 'SIGKILL');
    await until(() => j.status().ended !== undefined);
    expect(full(j.changesSince('spool', from))).toMatch(TIME);
  });
});
