# cmmigrate journal helper: reports every change under the agent's carried roots, from
# kernel fanotify events for the whole filesystems they are on, as lines on stdout. The
# agent (agent/journal/journal-source.ts) runs it with `python3 -I -S -c <bootstrap>` and
# this source on fd 3; it needs only Python 3 (stdlib: ctypes), Linux >= 5.9 and root.
#
# What it guarantees: every event of a marked filesystem whose entry is under a root is
# written out, in the kernel's queue order, or a line says that something may have been
# lost (O: the kernel queue overflowed; L: one root; X: every root). It never drops an
# event under a root silently; see resolve() for the one case it drops on purpose, with
# the event that covers it.
#
# Arguments: --root PATH (one slot per root, numbered from 0 in order; the agent gives the
# cookie directory as the last one), --mark SLOT PATH (another filesystem to watch for a
# slot: one mounted under the root). Output lines, fields separated by tabs:
#   R  <pid> <filesystems>             ready: every mark is set
#   E  <pid> <mask hex> <slot> <rel>   an event; rel is the entry's path from the root,
#                                      '' for the root itself
#   O  <unix time>                     the kernel's queue overflowed: loss for every root
#   L  <slot> <reason>                 loss for one root (mark failed, the root itself or
#                                      a directory above it renamed, removed or created)
#   X  <reason>                        loss for every root (an unexpected error)
# rel and reasons are bytes with '%', tab and newline written as %25, %09, %0A; every
# other byte is passed as it is (names need not be UTF-8).
# Exit codes: 0 stdin closed (the agent is gone), 2 usage, 3 fanotify unsupported,
# 4 the cookie directory cannot be watched, 5 reading events failed.

import ctypes
import errno
import os
import select
import struct
import sys
import time

FAN_CLOEXEC = 0x1
FAN_NONBLOCK = 0x2
FAN_CLASS_NOTIF = 0x0
FAN_REPORT_DIR_FID = 0x400
FAN_REPORT_NAME = 0x800
FAN_MARK_ADD = 0x1
FAN_MARK_FILESYSTEM = 0x100

FAN_MODIFY = 0x2
FAN_ATTRIB = 0x4
FAN_CLOSE_WRITE = 0x8
FAN_MOVED_FROM = 0x40
FAN_MOVED_TO = 0x80
FAN_CREATE = 0x100
FAN_DELETE = 0x200
FAN_DELETE_SELF = 0x400
FAN_MOVE_SELF = 0x800
FAN_Q_OVERFLOW = 0x4000
FAN_ONDIR = 0x40000000
MASK = (FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO | FAN_MODIFY | FAN_ATTRIB
        | FAN_CLOSE_WRITE | FAN_DELETE_SELF | FAN_MOVE_SELF | FAN_ONDIR)
DIRENT = FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO
SELF = FAN_DELETE_SELF | FAN_MOVE_SELF

INFO_DFID_NAME = 2
INFO_DFID = 3
AT_FDCWD = -100

# Which report flags. FAN_REPORT_DFID_NAME (DIR_FID | NAME) alone is what the journal
# needs, measured on Linux 6.18: a child file's MODIFY, ATTRIB and CLOSE_WRITE come with
# the parent directory's fid and the child's name (fanotify asks fsnotify for parent and
# name on filesystem marks once DIR_FID is set); dirent events with the directory and the
# entry's name; a directory's own events (ATTRIB, DELETE_SELF, MOVE_SELF with FAN_ONDIR)
# with its own fid and the name '.'. Adding FAN_REPORT_FID only adds the child's fid to
# those events (which then merge less in the queue: CREATE no longer merges with the
# MODIFY and CLOSE_WRITE that follow) and adds inode-only events that carry no name and no
# directory: ATTRIB for a changed link count and a file's MOVE_SELF and DELETE_SELF. Each of
# those comes from a link, unlink or rename whose dirent event names the entry already, so
# they would tell the journal nothing it could turn into a path.
INIT_FLAGS = FAN_CLASS_NOTIF | FAN_REPORT_DIR_FID | FAN_REPORT_NAME | FAN_CLOEXEC | FAN_NONBLOCK

EXIT_USAGE = 2
EXIT_UNSUPPORTED = 3
EXIT_COOKIE = 4
EXIT_READ = 5

READ_SIZE = 256 * 1024
# Output waiting for the agent; above this the helper stops reading events, and the
# kernel's queue (fs.fanotify.max_queued_events) holds what comes, then overflows.
MAX_PENDING = 8 * 1024 * 1024
CACHE_MAX = 100000
BATCH_WAIT = 0.01

libc = ctypes.CDLL(None, use_errno=True)
libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
libc.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
libc.statfs.argtypes = [ctypes.c_char_p, ctypes.c_void_p]

# event metadata (24 bytes), then the first info record's header, fsid and handle_bytes
HEAD = struct.Struct('=IxxHQ4xiBxHQI')
HEAD_SIZE = HEAD.size
META = struct.Struct('=IxxHQ')


def esc(b):
    # Membership of a byte value (an int) is a memchr; of a one-byte bytes, ten times slower.
    if 37 in b or 9 in b or 10 in b:
        b = b.replace(b'%', b'%25').replace(b'\t', b'%09').replace(b'\n', b'%0A')
    return b


def die(code, msg):
    os.write(2, b'cmmigrate-journal: ' + esc(msg.encode('utf-8', 'surrogateescape')) + b'\n')
    sys.exit(code)


def errname(e):
    return '%s (%s)' % (os.strerror(e), errno.errorcode.get(e, e))


def fsid_of(path):
    """The filesystem id as the kernel reports it in events: statfs's f_fsid, 8 bytes."""
    buf = ctypes.create_string_buffer(256)
    if libc.statfs(path, buf) != 0:
        return None
    # struct statfs: seven words before f_fsid (64-bit), or two words and five 64-bit
    # counts (32-bit statfs64 layout is what glibc's statfs gives with 64-bit off_t).
    off = 56 if ctypes.sizeof(ctypes.c_long) == 8 else 48
    return buf.raw[off:off + 8]


def mount_id(fd):
    with open('/proc/self/fdinfo/%d' % fd) as f:
        for line in f:
            if line.startswith('mnt_id:'):
                return int(line.split()[1])
    return None


class Helper:
    def __init__(self, slots, marks):
        self.slots = slots          # [(root path as given, real path)]
        self.marks = marks          # [(slot, path)]
        self.fan = -1
        self.mounts = {}            # fsid -> [(mount id, fd)]
        self.cache = {}             # fsid + handle -> see classify()
        self.heads = {}             # pid << 32 | mask -> b'E\t<pid>\t<mask>\t'
        self.fileroots = {}         # real dir path -> {name: slot} for roots that are not dirs
        self.pending = []
        self.pending_bytes = 0
        self.devs = set()
        self.order = []

    # -- setup ----------------------------------------------------------------------------

    def init(self):
        fd = libc.fanotify_init(INIT_FLAGS, os.O_RDONLY | os.O_LARGEFILE | os.O_CLOEXEC)
        if fd < 0:
            e = ctypes.get_errno()
            why = {errno.EINVAL: 'the kernel lacks FAN_REPORT_DFID_NAME (Linux >= 5.9 needed)',
                   errno.ENOSYS: 'the kernel has no fanotify',
                   errno.EPERM: 'fanotify needs root (CAP_SYS_ADMIN)'}.get(e, 'fanotify_init failed')
            die(EXIT_UNSUPPORTED, 'fanotify unsupported: %s: %s' % (why, errname(e)))
        self.fan = fd

    def mark(self, slot, path):
        """Watch the filesystem of path's nearest existing directory; '' or an error text."""
        p = path
        while True:
            try:
                fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                break
            except (FileNotFoundError, NotADirectoryError):
                if p in (b'/', b''):
                    return 'no directory of %s exists' % os.fsdecode(path)
                p = os.path.dirname(p)
            except OSError as e:
                return 'cannot open %s: %s' % (os.fsdecode(p), errname(e.errno))
        st = os.fstat(fd)
        fsid = fsid_of(p)
        if fsid is None:
            os.close(fd)
            return 'statfs %s: %s' % (os.fsdecode(p), errname(ctypes.get_errno()))
        if st.st_dev not in self.devs:
            if libc.fanotify_mark(self.fan, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, MASK, AT_FDCWD, p) != 0:
                e = ctypes.get_errno()
                os.close(fd)
                if e == errno.EPERM:
                    # Since Linux 5.13 fanotify_init works unprivileged; a filesystem mark never does.
                    die(EXIT_UNSUPPORTED, 'fanotify unsupported: watching a whole filesystem needs root (CAP_SYS_ADMIN): %s' % errname(e))
                why = {errno.ENODEV: 'the filesystem has no fsid',
                       errno.EOPNOTSUPP: 'the filesystem does not support file handles',
                       errno.EXDEV: 'the filesystem cannot be watched as a whole here (a subvolume?)'}.get(e, 'fanotify_mark failed')
                return 'cannot watch %s: %s: %s' % (os.fsdecode(p), why, errname(e))
            self.devs.add(st.st_dev)
        # One fd per mount of each filesystem: a handle is opened through it, and the path
        # the kernel gives back is the path through that mount.
        mid = mount_id(fd)
        known = self.mounts.setdefault(fsid, [])
        if any(m == mid for m, _ in known):
            os.close(fd)
        else:
            known.append((mid, fd))
        return ''

    def setup(self):
        self.init()
        cookie = len(self.slots) - 1
        for slot, (given, real) in enumerate(self.slots):
            # A root that is not a directory (a file, a symlink, absent) is an entry of its
            # parent: its events are the parent's, under its name.
            isdir = os.path.isdir(real) and not os.path.islink(real)
            err = self.mark(slot, real if isdir or slot == cookie else os.path.dirname(real))
            if err and slot == cookie:
                die(EXIT_COOKIE, 'cannot watch the cookie directory %s: %s' % (os.fsdecode(given), err))
            if err:
                self.out(b'L\t%d\t%s\n' % (slot, esc(err.encode('utf-8', 'surrogateescape'))))
            if slot != cookie and not isdir:
                d, n = os.path.split(real)
                self.fileroots.setdefault(d, {})[n] = slot
        # The outermost root first: the agent hands an event on to the roots nested in it.
        self.order = [cookie] + sorted(range(cookie), key=lambda i: len(self.slots[i][1]))
        for slot, path in self.marks:
            err = self.mark(slot, os.path.realpath(path))
            if err:
                self.out(b'L\t%d\t%s\n' % (slot, esc(err.encode('utf-8', 'surrogateescape'))))
        self.out(b'R\t%d\t%d\n' % (os.getpid(), len(self.devs)))

    # -- resolving a directory's handle ---------------------------------------------------

    def classify(self, dirpath):
        """What the event loop needs of a directory: (slot, tail, dirpath, fileroots, self)
        where tail is b'<slot>\t<escaped path from the root>/' to put a name after (b'<slot>\t'
        for the root), self the same line's end for the directory itself; for a directory
        under no root: (-1, None, dirpath, {name: slot} of file roots in it or None, None)."""
        for slot in self.order:
            real = self.slots[slot][1]
            if dirpath == real:
                return (slot, b'%d\t' % slot, dirpath, None, b'%d\t\n' % slot)
            if dirpath.startswith(real + b'/'):
                rel = esc(dirpath[len(real) + 1:])
                return (slot, b'%d\t%s/' % (slot, rel), dirpath, None, b'%d\t%s\n' % (slot, rel))
        return (-1, None, dirpath, self.fileroots.get(dirpath), None)

    def resolve(self, key):
        """The cache entry of a directory handle (key: fsid + struct file_handle), or None
        when the directory no longer exists.

        A handle that does not open (ESTALE) or opens a directory already removed (no links
        left) is a directory that is gone, and the event is dropped: nothing is lost,
        because a directory is removed (rmdir, or renamed and then removed) only by an
        event that names it in its parent, and that event comes later in this queue. If
        the parent resolves, that event is reported (under a root: the old name, with
        FAN_ONDIR, which the journal walks as a whole subtree; above a root: an L line).
        If the parent is gone too, the same holds for it, up to the topmost directory
        removed, whose parent still exists. Any other error is reported as a loss."""
        fsid = key[:8]
        handle = key[8:]
        fds = self.mounts.get(fsid)
        if fds is None:
            # A filesystem not marked by this fsid (a btrfs subvolume has its own): try
            # every mount; an event can only come from a filesystem that was marked.
            fds = [m for ms in self.mounts.values() for m in ms]
        first = None
        for _, mfd in fds:
            fd = libc.open_by_handle_at(mfd, handle, os.O_PATH | os.O_CLOEXEC)
            if fd < 0:
                e = ctypes.get_errno()
                if e in (errno.ESTALE, errno.ENOENT):
                    continue
                self.out(b'X\t%s\n' % esc(('open_by_handle_at: %s' % errname(e)).encode()))
                return None
            try:
                if os.fstat(fd).st_nlink == 0:
                    continue
                path = os.readlink(b'/proc/self/fd/%d' % fd)
            finally:
                os.close(fd)
            v = self.classify(path)
            if v[0] >= 0 or v[3] is not None:
                self.cache_put(key, v)
                return v
            if first is None:
                first = v
        if first is not None:
            self.cache_put(key, first)
        return first

    def cache_put(self, key, v):
        if len(self.cache) >= CACHE_MAX:
            self.cache.clear()
        self.cache[key] = v

    def above(self, mask, dirpath, name):
        """A directory at or above a root renamed, removed or created: a loss for it."""
        full = dirpath + b'/' + name if dirpath != b'/' else b'/' + name
        for slot in range(len(self.slots) - 1):
            real = self.slots[slot][1]
            if real == full or real.startswith(full + b'/'):
                self.out(b'L\t%d\t%s\n' % (slot, esc(b'%s changed (mask %x)' % (full, mask))))

    # -- the event loop -----------------------------------------------------------------

    def events(self, buf, n):
        """One read's events to output lines. The common case (a name in a directory of a
        root, found in the cache) is kept to a few cheap operations: about 1 µs each."""
        out = []
        append = out.append
        cache = self.cache
        get = cache.get
        heads = self.heads
        head = HEAD.unpack_from
        index = buf.index
        off = 0
        while off < n:
            if n - off < HEAD_SIZE:
                # Too short for an info record: the overflow event (metadata only).
                ev_len, mlen, mask = META.unpack_from(buf, off)
                itype = 0
            else:
                ev_len, mlen, mask, pid, itype, _, _, hb = head(buf, off)
            if mask & FAN_Q_OVERFLOW:
                append(b'O\t%.3f\n' % time.time())
                off += ev_len
                continue
            if mlen != 24 or (itype != INFO_DFID_NAME and itype != INFO_DFID):
                # Not what this group reports (or a newer metadata layout): say so rather
                # than guess which entry it was about.
                append(b'X\tunexpected event record (mask %x, info type %d)\n' % (mask, itype))
                off += ev_len
                continue
            hend = off + 44 + hb
            key = buf[off + 28:hend]
            name = buf[hend:index(0, hend)] if itype == INFO_DFID_NAME else b'.'
            off += ev_len
            v = get(key)
            if v is None:
                v = self.resolve(key)
                if v is None:
                    continue
            if mask & FAN_ONDIR:
                if mask & SELF:
                    # The directory itself moved or went: paths cached for it and below
                    # are stale (a move), or it will not be seen again (a removal).
                    if mask & FAN_MOVE_SELF:
                        cache.clear()
                    else:
                        cache.pop(key, None)
                    continue
                if mask & DIRENT:
                    if v[0] < 0:
                        self.above(mask, v[2], name)
                    if mask & FAN_MOVED_FROM:
                        cache.clear()
            tail = v[1]
            if tail is None:
                if v[3] is not None:
                    s = v[3].get(name)
                    if s is not None:
                        append(b'E\t%d\t%x\t%d\t\n' % (pid, mask, s))
                continue
            k = pid << 32 | mask
            e = heads.get(k)
            if e is None:
                if len(heads) > 4096:
                    heads.clear()
                e = heads[k] = b'E\t%d\t%x\t' % (pid, mask)
            if name == b'.':
                append(e + v[4])
            elif 37 in name or 9 in name or 10 in name:
                append(e + tail + esc(name) + b'\n')
            else:
                append(e + tail + name + b'\n')
        if out:
            self.out(b''.join(out))

    def out(self, data):
        self.pending.append(data)
        self.pending_bytes += len(data)

    def flush(self):
        while self.pending:
            data = self.pending[0]
            try:
                k = os.write(1, data)
            except BlockingIOError:
                return
            except BrokenPipeError:
                sys.exit(0)
            self.pending_bytes -= k
            if k < len(data):
                self.pending[0] = data[k:]
                return
            self.pending.pop(0)
            if len(self.pending) > 1:
                # Few large writes: join what waits.
                joined = b''.join(self.pending)
                self.pending = [joined]

    def run(self):
        os.set_blocking(1, False)
        try:
            import fcntl
            fcntl.fcntl(1, 1031, 1 << 20)  # F_SETPIPE_SZ: room for bursts while the agent is busy
        except OSError:
            pass
        self.flush()
        poll = select.poll()
        fan_on = False
        poll.register(0, select.POLLIN)
        while True:
            nap = False
            want_fan = self.pending_bytes < MAX_PENDING
            if want_fan != fan_on:
                if want_fan:
                    poll.register(self.fan, select.POLLIN)
                else:
                    poll.unregister(self.fan)
                fan_on = want_fan
            poll.register(1, select.POLLOUT if self.pending else 0)
            for fd, ev in poll.poll():
                if fd == 0:
                    if not os.read(0, 4096):
                        sys.exit(0)
                elif fd == self.fan:
                    try:
                        buf = os.read(self.fan, READ_SIZE)
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        die(EXIT_READ, 'reading fanotify events: %s' % errname(e.errno))
                    self.events(buf, len(buf))
                    nap = len(buf) < READ_SIZE // 2
                elif fd == 1 and ev & (select.POLLERR | select.POLLHUP):
                    sys.exit(0)
            if self.pending:
                self.flush()
            if nap:
                # Let events gather for a moment after a short read: fewer, larger reads
                # and writes (a third less CPU per event, measured), and the kernel merges
                # repeated events of an entry meanwhile. A sync waits at most this much
                # longer; to fill the kernel's queue (16,384 events by default) meanwhile
                # would take over a million events a second.
                time.sleep(BATCH_WAIT)


def main(argv):
    slots = []
    marks = []
    args = [os.fsencode(a) for a in argv]
    i = 0
    try:
        while i < len(args):
            if args[i] == b'--root':
                p = args[i + 1]
                d, n = os.path.split(p.rstrip(b'/') or b'/')
                real = os.path.join(os.path.realpath(d), n) if n else b'/'
                slots.append((p, real))
                i += 2
            elif args[i] == b'--mark':
                marks.append((int(args[i + 1]), args[i + 2]))
                i += 3
            else:
                i += 1
    except (IndexError, ValueError):
        die(EXIT_USAGE, 'usage: --root PATH... [--mark SLOT PATH]...')
    if not slots:
        die(EXIT_USAGE, 'usage: --root PATH... [--mark SLOT PATH]...')
    h = Helper(slots, marks)
    h.setup()
    h.run()


if __name__ == '__main__':
    main(sys.argv[1:])
