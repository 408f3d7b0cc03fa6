"""The systemd notify protocol for services with ``notify: true`` (SPEC §18).

Each run of such a service gets its own datagram socket, bound by the daemon in
a runtime dir under ``/run/kepler`` (the state dir is closed to service users),
owned by the service's user with mode 0600: only that user (and root) may send
to it. The path goes to the service as ``NOTIFY_SOCKET``. ``READY=1`` marks the
run ready; ``STATUS=text`` is kept for ``inspect`` and ``ps --json``.
"""

import errno
import os

from gevent import socket

from keplerd.osproc import users
from keplerd.paths import sha256  # not hashlib's: it loads OpenSSL into the daemon (~4 MiB)

RUNTIME_ROOT = "/run/kepler"
DATAGRAM_LIMIT = 4096
STATUS_LIMIT = 1024


class NotifyError(Exception):
    """The notify socket cannot be made; the message is the reason the service fails with."""


def socket_path(state_dir, config_id, service):
    """Return the short path of a service's socket (sun_path holds at most 107 bytes)."""
    daemon = sha256(os.path.abspath(state_dir).encode()).hexdigest()[:12]
    own = sha256(f"{config_id}/{service}".encode()).hexdigest()[:16]
    return os.path.join(RUNTIME_ROOT, f"notify-{daemon}", f"{own}.sock")


def parse(datagram):
    """Return ``{KEY: value}`` of one notification (``READY=1\\nSTATUS=up``); bad lines are skipped."""
    fields = {}
    for line in datagram.decode("utf-8", "replace").split("\n"):
        key, equals, value = line.partition("=")
        if equals and key:
            fields[key] = value
    return fields


class NotifySocket:
    """One run's notify socket: bound and owned by the service's user, removed when closed.

    A ``daemon reexec`` hands it to the next image (``hand_over``, ``adopt``): what the
    service sends meanwhile waits in it, so no notification is lost.
    """

    def __init__(self, path, user=None, group=None):
        self.path = path
        self.sock = None
        try:
            identity = users.resolve(user, group) if user is not None or group is not None else None
        except users.UnknownIdentity as error:
            raise NotifyError(str(error)) from None
        try:
            self._bind(identity)
        except OSError as error:
            self.close()
            raise NotifyError(f"cannot make the notify socket {path}: {error.strerror or error}") from None

    @classmethod
    def adopt(cls, path, fd):
        """Take over the socket *fd* an earlier image of the daemon bound at *path* (``daemon reexec``)."""
        notify = cls.__new__(cls)
        notify.path = path
        os.set_inheritable(fd, False)
        notify.sock = socket.socket(fileno=fd)
        return notify

    def hand_over(self):
        """Return ``{path, fd}`` for the next image of the daemon, the fd kept open across the exec."""
        fd = self.sock.fileno()
        os.set_inheritable(fd, True)
        return {"path": self.path, "fd": fd}

    def _bind(self, identity):
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o711, exist_ok=True)
        # Traversable by every service user (the daemon's umask would make them 0770); listable by none.
        os.chmod(directory, 0o711)
        root = os.path.dirname(directory)
        os.chmod(root, os.stat(root).st_mode & 0o7777 | 0o111)
        _remove(self.path)  # left by a daemon that died
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o600)
        if identity is not None:
            os.chown(self.path, identity.uid, identity.gid)

    def listen(self, on_message):
        """Pass each notification, parsed, to *on_message*; runs until killed (in the run's greenlet)."""
        while True:
            datagram = self.sock.recv(DATAGRAM_LIMIT)
            on_message(parse(datagram))

    def close(self):
        """Close and remove the socket, and its directory once no other service uses it."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        _remove(self.path)
        try:
            os.rmdir(os.path.dirname(self.path))
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                raise


def status_text(value):
    """Return a STATUS= value as shown to users: one line, bounded."""
    return value.replace("\n", " ")[:STATUS_LIMIT]


def _remove(path):
    try:
        os.unlink(path)
    except OSError as error:
        if error.errno != errno.ENOENT:
            raise
