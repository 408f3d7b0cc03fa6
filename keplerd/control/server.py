"""The control socket: bind it safely, check who connects, serve their sessions.

Every connection is one ``Session``: a hello exchange, then requests that each run
in their own greenlet, answered through a bounded send queue so that a client that
stops reading is dropped instead of blocking anything else.
"""

import errno
import functools
import grp
import logging
import os
import pwd
import socket
import struct
from collections import Counter

from gevent.pool import Pool
from gevent.server import StreamServer

from keplerd.control.session import Session, SessionLimits, linger, send_quietly

log = logging.getLogger("keplerd.control")

MAX_SESSIONS = 1024            # root's sessions, and (separately) all other users' together
_PEERCRED = struct.Struct("3i")
# The rlimits a config may set (SPEC §12), by ``limits.<name>``, as /proc/<pid>/limits names them.
_LIMIT_ROWS = {"memory": "Max address space", "cpu_time": "Max cpu time", "max_fds": "Max open files"}


class AlreadyRunning(Exception):
    """Another daemon answers on the socket."""


def bind_socket(path, group_name):
    """Return a listening Unix socket at *path*, ``0660 root:<group>`` (or ``0600``).

    A live daemon on *path* raises ``AlreadyRunning``; a stale socket file is
    replaced. The socket is bound under a temporary name, given its mode and owner,
    then renamed into place, so no client ever sees it with the wrong permissions.
    """
    if os.path.exists(path):
        if socket_answers(path):
            raise AlreadyRunning(f"another keplerd is already listening on {path}")
        log.warning("removing stale socket %s", path)
        os.unlink(path)
    gid = group_id(group_name)
    temporary = f"{path}.{os.getpid()}.tmp"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if os.path.exists(temporary):
            os.unlink(temporary)
        listener.bind(temporary)
        if gid is None:
            log.warning("group %r does not exist: socket %s is root-only (0600)", group_name, path)
            os.chmod(temporary, 0o600)
        else:
            os.chown(temporary, 0, gid)
            os.chmod(temporary, 0o660)
        listener.listen(128)
        os.rename(temporary, path)
    except BaseException:
        listener.close()
        raise
    return listener


def socket_answers(path):
    """Tell whether something accepts connections on the Unix socket *path*."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
        return True
    except OSError as error:
        if error.errno in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK):
            return False
        raise
    finally:
        probe.close()


def group_id(name):
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


class Peer:
    """Who is on the other end of a connection, from ``SO_PEERCRED`` and ``/proc``."""

    def __init__(self, pid, uid, gid):
        self.pid, self.uid, self.gid = pid, uid, gid

    @classmethod
    def of(cls, sock):
        """Return the peer of a connected Unix socket, as it was when it connected."""
        return cls(*_PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)))

    @functools.cached_property
    def user(self):
        """The peer's user name (looked up once per connection: every request's Caller asks)."""
        try:
            return pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return str(self.uid)

    def groups(self):
        """Return the primary and supplementary gids of the peer process.

        The supplementary groups come from ``/proc/<pid>/status`` and count only
        while that pid still runs with the effective uid that connected: a pid
        reused by another user's process must not lend its groups to this one.
        """
        gids = {self.gid}
        status = _proc_ids(self.pid)
        if status.get("Uid", [None, None])[1] == self.uid:
            gids.update(status.get("Groups", ()))
        return gids

    def hard_limits(self):
        """Return the peer's hard rlimits by ``limits`` name (None: unlimited).

        Read from ``/proc/<pid>/limits`` (``prlimit`` would need CAP_SYS_RESOURCE,
        which a container may withhold from root), and only while the pid still
        runs with the uid that connected: otherwise (the client left, its pid went
        to someone else) every limit reads 0, so that nothing is granted on a
        stranger's limits.
        """
        unknown = dict.fromkeys(_LIMIT_ROWS, 0)
        try:
            with open(f"/proc/{self.pid}/limits") as file:
                rows = file.read().splitlines()
        except OSError:
            return unknown
        if _proc_ids(self.pid).get("Uid", [None, None])[1] != self.uid:
            return unknown
        limits = {}
        for name, title in _LIMIT_ROWS.items():
            row = next((line[len(title):].split() for line in rows if line.startswith(title)), None)
            hard = row[1] if row and len(row) > 1 else "0"
            limits[name] = None if hard == "unlimited" else int(hard)
        return limits

    def allowed(self, group_gid):
        return self.uid == 0 or (group_gid is not None and group_gid in self.groups())


def _proc_ids(pid):
    """Return the ``Uid``, ``Gid`` and ``Groups`` lines of ``/proc/<pid>/status`` as lists of ints."""
    ids = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("Uid", "Gid", "Groups"):
                    ids[key] = [int(number) for number in value.split()]
    except OSError:
        pass  # the client is already gone: its primary group is all we know
    return ids


class ControlServer:
    """Serves CLI sessions on the bound socket; *dispatch* answers each request.

    Root has its own budget of sessions, so that other users, whatever they do,
    never lock it out; each other user may hold ``limits.per_user`` of theirs.
    """

    def __init__(self, listener, group_name, dispatch, limits=None, on_session_end=None):
        self._group_name = group_name
        self._on_session_end = on_session_end  # given each Session once its connection is closed
        self._group_gid = group_id(group_name)  # looked up once (and on SIGHUP), not per connection
        self._dispatch = dispatch
        self.limits = limits or SessionLimits()
        self._sessions = Counter()  # by uid
        self._before_hello = {}     # sessions that have not said hello yet, oldest first: uid
        self._server = StreamServer(listener, self._handle, spawn=Pool(2 * MAX_SESSIONS + 64))

    def start(self):
        self._server.start()

    def reread_group(self):
        """Look the socket group up again (a reload: its gid or existence may have changed)."""
        self._group_gid = group_id(self._group_name)

    def stop_accepting(self):
        """Leave new connections in the socket's backlog (the listener stays open)."""
        self._server.stop_accepting()

    def start_accepting(self):
        self._server.start_accepting()

    def stop(self, timeout=1.0):
        self._server.stop(timeout=timeout)

    def _handle(self, sock, _address):
        peer = Peer.of(sock)
        if not peer.allowed(self._group_gid):
            message = f"permission denied: user {peer.user} is not in group {self._group_name}"
            log.warning("refused connection from pid %s: %s", peer.pid, message)
            _refuse(sock, message)
            return
        refusal = self._over_limit(peer)
        if refusal and not self._evict_a_silent_session(peer.uid):
            log.warning("refused connection from pid %s: %s", peer.pid, refusal)
            _refuse(sock, refusal)
            return
        session = Session(sock, peer, self._dispatch, self.limits)
        self._sessions[peer.uid] += 1
        self._before_hello[session] = peer.uid
        try:
            session.serve(on_hello=lambda: self._before_hello.pop(session, None))
        finally:
            self._before_hello.pop(session, None)
            if session.counted:
                self._uncount(peer.uid)
            if self._on_session_end is not None:
                self._on_session_end(session)

    def _uncount(self, uid):
        self._sessions[uid] -= 1
        if not self._sessions[uid]:
            del self._sessions[uid]

    def _evict_a_silent_session(self, uid):
        """Make room for a new session of *uid* by closing its oldest one still without a hello."""
        oldest = next((session for session, owner in self._before_hello.items() if owner == uid), None)
        if oldest is None:
            return False
        del self._before_hello[oldest]
        log.info("closing a session of pid %s that said no hello: a new one needs its place", oldest.peer.pid)
        oldest.counted = False  # this connection takes its place now, not when its greenlet ends
        self._uncount(uid)
        oldest.close()
        return True

    def _over_limit(self, peer):
        """Return why *peer* may not open one more session, or None."""
        if peer.uid == 0:
            held = self._sessions[0]
            return f"too many sessions: root holds {held}" if held >= MAX_SESSIONS else None
        if self._sessions[peer.uid] >= self.limits.per_user:
            return (f"too many sessions: user {peer.user} holds {self._sessions[peer.uid]} "
                    f"(client_sessions_per_user: {self.limits.per_user})")
        others = sum(count for uid, count in self._sessions.items() if uid != 0)
        return f"too many sessions: {others} are open" if others >= MAX_SESSIONS else None


def _refuse(sock, message):
    send_quietly(sock, {"id": None, "response": {"ok": False, "error": message}})
    linger(sock)
    sock.close()
