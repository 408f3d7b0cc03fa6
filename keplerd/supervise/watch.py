"""Restart on file changes (SPEC §10 ``restart.watch``): inotify on the gevent loop.

A ``Watcher`` watches, with one inotify instance, every directory that may hold
a path matching the service's patterns, follows directories as they are created,
moved or deleted, and calls ``on_change(path)`` once per burst of changes: the
first matching change opens a window of ``DEBOUNCE_SECONDS``, changes within it
are absorbed, and the call comes when it closes. Its greenlet sleeps in
``wait_read`` on the inotify fd and reads with ``timeout=0``: no thread, no polling.

Counted: a path created, written and closed, deleted, or moved in or out.
Never watched: the *exclude* paths and everything under them: what the daemon
writes itself (``daemon_files``: ``configs/`` of its state dir, where the service
logs are written, its pid file, socket and own log). Anything else is watched,
wherever it lives. A pattern that can watch nothing at all is reported (``watch_error``).
Symlinked directories are not followed.
"""

import errno
import logging
import os
import time

import gevent
from gevent.socket import wait_read
from inotify_simple import INotify, flags

log = logging.getLogger("keplerd.watch")

DEBOUNCE_SECONDS = 0.5
YIELD_EVERY = 200  # directories watched between two yields to the loop while walking a big tree
CHANGES = flags.CREATE | flags.CLOSE_WRITE | flags.DELETE | flags.MOVED_FROM | flags.MOVED_TO
MASK = CHANGES | flags.DELETE_SELF | flags.MOVE_SELF | flags.ONLYDIR
LIMITS = "/proc/sys/fs/inotify"


class _Quiet(Exception):
    """The wait for events timed out (the debounce window closed)."""


class Watcher:
    """Watch the paths of a ``GlobSet``; report changes to *on_change*, problems to *on_error*.

    *spawn* starts the watcher's greenlet (the owning project's ``spawn``);
    *open_inotify* is the seam tests use to make inotify fail.
    """

    def __init__(self, globs, on_change, on_error, spawn=gevent.spawn, exclude=(),
                 open_inotify=INotify, debounce=DEBOUNCE_SECONDS):
        self.globs = globs
        self.error = None
        self._on_change = on_change
        self._on_error = on_error
        self._spawn = spawn
        self._exclude = {path for directory in exclude
                         for path in (os.path.abspath(directory), os.path.realpath(directory))}
        self._open_inotify = open_inotify
        self._debounce = debounce
        self._inotify = None
        self._greenlet = None
        self._dirs = {}   # watch descriptor -> directory
        self._wds = {}    # directory -> watch descriptor

    @property
    def watched(self):
        """Return how many directories are watched."""
        return len(self._wds)

    def arm(self):
        """Watch the directories that may hold matches, then wait for changes in a greenlet."""
        try:
            self._inotify = self._open_inotify(nonblocking=True)
        except OSError as error:
            self._fail(_describe(error))
            return
        self._watch_roots()
        self._report_unwatchable()
        log.debug("watching %d directories for %s", self.watched, [glob.pattern for glob in self.globs.globs])
        self._greenlet = self._spawn(self._run)

    def disarm(self):
        """Stop watching: end the greenlet, close the inotify fd (which drops every watch)."""
        if self._greenlet is not None:
            self._greenlet.kill()
        if self._inotify is not None:
            self._inotify.close()
        self._greenlet = self._inotify = None
        self._dirs.clear()
        self._wds.clear()

    # -- the loop --------------------------------------------------------------------

    def _run(self):
        try:
            while True:
                change = self._next_change(None)
                deadline = time.monotonic() + self._debounce
                while (left := deadline - time.monotonic()) > 0:
                    self._next_change(left)
                # What the kernel queued before the window closed belongs to this burst.
                while self._handle(self._inotify.read(timeout=0)):
                    pass
                self._on_change(change)
        except OSError as error:
            # The service keeps running; only its watch ends, and inspect says why.
            self._fail(f"stopped watching files: {error}")

    def _next_change(self, timeout):
        """Wait up to *timeout* (None: for ever) for a matching change; return its path or None."""
        while True:
            try:
                wait_read(self._inotify.fileno(), timeout, _Quiet)
            except _Quiet:
                return None
            change = self._handle(self._inotify.read(timeout=0))
            if change or timeout is not None:
                return change

    def _handle(self, events):
        """Follow directory changes in *events*; return the first matching path that changed."""
        first = None
        for event in events:
            change = self._event(event)
            first = first or change
        return first

    def _event(self, event):
        if event.mask & flags.Q_OVERFLOW:
            # Events were lost: something may have changed, and new directories may be unwatched.
            self._rewatch()
            return "(too many changes at once)"
        directory = self._dirs.get(event.wd)
        if directory is None:
            return None  # a watch we already dropped
        if event.mask & flags.IGNORED:
            self._forget(directory)
            self._watch_roots()  # a root that went away: watch where it would come back
            return None
        if event.mask & flags.MOVE_SELF:
            self._unwatch_tree(directory)
            self._watch_roots()
            return None
        if not event.mask & CHANGES or not event.name:
            return None
        path = os.path.join(directory, event.name)
        if self._excluded(path):
            return None
        found = None
        if event.mask & flags.ISDIR:
            if event.mask & (flags.CREATE | flags.MOVED_TO) and self.globs.may_contain(path):
                found = self._watch_tree(path, collect=True)
            elif event.mask & (flags.DELETE | flags.MOVED_FROM):
                self._unwatch_tree(path)
                # A deleted directory was empty, but one moved away takes its files with it.
                if event.mask & flags.MOVED_FROM and self.globs.may_contain(path):
                    found = path
        return path if self.globs.matches(path) else found

    # -- which directories are watched ---------------------------------------------

    def _watch_roots(self):
        """Watch each pattern's root, or its nearest existing ancestor while it is missing."""
        for root in self.globs.roots:
            directory = root
            while directory != "/" and not os.path.isdir(directory):
                directory = os.path.dirname(directory)
            if directory not in self._wds:
                self._watch_tree(directory)

    def _watch_tree(self, top, collect=False):
        """Watch *top* and the directories below it that may hold matches.

        With *collect*, return the first matching path found in them: the tree is
        new, so what it holds appeared after we armed (perhaps before its watch).
        """
        found, pending, added = None, [top], 0
        while pending:
            directory = pending.pop()
            if directory in self._wds or self._excluded(directory) or not self._add_watch(directory):
                continue
            added += 1
            if added % YIELD_EVERY == 0:
                gevent.sleep(0)
            try:
                entries = list(os.scandir(directory))
            except OSError:
                continue  # gone or unreadable already: its watch reports what happens next
            for entry in entries:
                if entry.is_dir(follow_symlinks=False) and self.globs.may_contain(entry.path):
                    pending.append(entry.path)
                if collect and found is None and self.globs.matches(entry.path):
                    found = entry.path
        return found

    def _add_watch(self, directory):
        try:
            wd = self._inotify.add_watch(directory, MASK)
        except OSError as error:
            if error.errno not in (errno.ENOENT, errno.ENOTDIR):
                self._fail(_describe(error, directory))
            # ENOENT/ENOTDIR: gone before we got there; its parent's events tell the rest.
            return False
        self._dirs[wd] = directory
        self._wds[directory] = wd
        return True

    def _unwatch_tree(self, top):
        """Stop watching *top* and everything below it (it moved away or was deleted)."""
        below = top.rstrip("/") + "/"
        for directory in [path for path in self._wds if path == top or path.startswith(below)]:
            wd = self._forget(directory)
            try:
                self._inotify.rm_watch(wd)
            except OSError as error:
                if error.errno != errno.EINVAL:
                    raise
                # EINVAL: the kernel has already dropped this watch (its directory is gone).

    def _forget(self, directory):
        wd = self._wds.pop(directory, None)
        self._dirs.pop(wd, None)
        return wd

    def _rewatch(self):
        """Drop every watch and watch the trees again (after lost events)."""
        for directory in list(self._wds):
            self._unwatch_tree(directory)
        self._watch_roots()

    def _report_unwatchable(self):
        """Say so when a pattern can match nothing: it lies in what the daemon writes itself."""
        for glob in self.globs.globs:
            if self._excluded(glob.root):
                self._fail(f"cannot watch {glob.pattern}: the daemon writes there itself (its state dir's "
                           f"configs/, its log): nothing there is watched")

    def _excluded(self, path):
        return any(path == directory or path.startswith(directory + "/") for directory in self._exclude)

    def _fail(self, message):
        if message == self.error:
            return
        self.error = message
        self._on_error(message)


def daemon_files(state_dir):
    """Return what the daemon writes itself: never watched (its writes would restart services)."""
    return [os.path.join(state_dir, "configs"), os.path.join(state_dir, "kepler.pid"),
            os.path.join(state_dir, "kepler.sock"), *daemon_log_files()]


def daemon_log_files():
    """Return the regular files the daemon's stdout and stderr go to (``keplerd 2>>file``)."""
    files = []
    for fd in (1, 2):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed: nothing to leave out
        if os.path.isfile(target):
            files.append(target)
    return files


def describe_path(path, base_dir):
    """Return *path* relative to *base_dir* when it is below it, else as it is."""
    base = os.path.realpath(base_dir)
    return os.path.relpath(path, base) if path.startswith(base + "/") else path


def _describe(error, directory=None):
    """Say what an inotify failure means, and what to do about it."""
    if error.errno == errno.ENOSPC:
        return (f"inotify watch limit reached (fs.inotify.max_user_watches = {_limit('max_user_watches')}): "
                "changes in some directories are not seen; raise the limit with sysctl or narrow restart.watch")
    if error.errno == errno.EMFILE:
        return (f"too many inotify instances (fs.inotify.max_user_instances = {_limit('max_user_instances')}): "
                "not watching files; raise the limit with sysctl")
    where = f" {directory}" if directory else " files"
    return f"cannot watch{where}: {os.strerror(error.errno) if error.errno else error}"


def _limit(name):
    try:
        with open(os.path.join(LIMITS, name)) as file:
            return file.read().strip()
    except OSError:
        return "?"
