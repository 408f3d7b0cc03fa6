"""Who may do what (SPEC §21): the one place that decides, for every request.

uid 0 may do everything. Any other caller owns the configs it bakes, and may
touch no other: every request reaches configs through the ``CallerRegistry``
that ``dispatch`` hands its handler, which refuses (and logs) a config of
someone else and lists only the caller's own. What a non-root caller's services
may run as is decided at bake (``keplerd.config.runas``), from the ``Caller``
described here.

>>> may_use(caller_uid=1000, owner_uid=1000), may_use(1000, 0), may_use(0, 1000)
(True, False, True)
"""

import logging

from keplerd import paths

log = logging.getLogger("keplerd.access")

ROOT = 0
# Requests about the daemon as a whole, which reach every config: root only.
ROOT_ONLY = {"daemon_stop": "stop the daemon", "daemon_reexec": "re-execute the daemon"}


class PermissionDenied(Exception):
    """The caller may not do that; the message goes back to it."""


def may_use(caller_uid, owner_uid):
    """Tell whether the user *caller_uid* may act on a config owned by *owner_uid*."""
    return caller_uid in (ROOT, owner_uid)


def visible(caller_uid, projects):
    """Return those of *projects* the user *caller_uid* may see (``ps --all``, ``events --all``, ``top --all``)."""
    return [project for project in projects if may_use(caller_uid, project.owner_uid)]


class Caller:
    """Who sent a request: the socket peer, and what keplerd.conf's ``allow_run_as`` grants it."""

    def __init__(self, peer, allow_run_as=None):
        self.peer = peer
        self.uid = peer.uid
        self.name = peer.user
        self._allow_run_as = allow_run_as or {}

    @property
    def is_root(self):
        return self.uid == ROOT

    def refuse(self, message):
        """Log *message* with who asked, and raise it as ``PermissionDenied``."""
        log.warning("uid %s (%s, pid %s): %s", self.uid, self.name, self.peer.pid, message)
        raise PermissionDenied(message)

    def authorize(self, request_type):
        """Refuse a request type that only root may send."""
        if not self.is_root and request_type in ROOT_ONLY:
            self.refuse(f"permission denied: only root may {ROOT_ONLY[request_type]}")

    def check(self, project):
        """Refuse *project* unless this caller may act on it; return it."""
        if not may_use(self.uid, project.owner_uid):
            self.refuse(f"permission denied: {project.source_path} belongs to {project.owner}")
        return project

    def for_bake(self):
        """Describe this caller to a bake (``keplerd.config.runas``); None for root, whose bakes are unchecked."""
        if self.is_root:
            return None
        allowed = self._allow_run_as.get(self.name, []) + self._allow_run_as.get(str(self.uid), [])
        return {"uid": self.uid, "gid": self.peer.gid, "groups": sorted(self.peer.groups()), "name": self.name,
                "allowed": list(allowed), "hard_limits": self.peer.hard_limits()}


class CallerRegistry:
    """The daemon's registry as one caller may use it: other users' configs are refused or hidden.

    Handlers reach configs only through this: every method that finds, lists,
    bakes or unloads configs is defined here with its check. Any other registry
    attribute is refused, so that a new registry method cannot skip the check by
    accident: add it here, checked.
    """

    PLAIN = ("state_dir", "bake_options")  # the registry's settings, which say nothing of any config

    def __init__(self, registry, caller):
        self._registry = registry
        self.caller = caller

    def __getattr__(self, name):
        if name in self.PLAIN:
            return getattr(self._registry, name)
        raise AttributeError(f"{name}: not reachable through the caller's registry; "
                             f"add it to keplerd/control/access.py with its access check")

    @property
    def projects(self):
        """The loaded configs this caller may see, by config id."""
        shown = visible(self.caller.uid, self._registry.projects.values())
        return {project.id: project for project in shown}

    def find(self, config_path):
        return self.caller.check(self._registry.find(config_path))

    def by_id(self, config_id):
        """Return the loaded config *config_id* (None when not loaded); refuse another user's."""
        project = self._registry.projects.get(config_id)
        return None if project is None else self.caller.check(project)

    def get_or_bake(self, config_path, sys_env, home, display_name=None):
        """Return the config of *config_path*, baking it for this caller when it is not loaded."""
        project = self._registry.projects.get(paths.config_id(config_path))
        if project is not None:
            return self.caller.check(project)
        # Another caller may bake the same file meanwhile: whoever baked it owns it.
        project = self._registry.get_or_bake(config_path, sys_env, home, display_name, self.caller.for_bake())
        return self.caller.check(project)

    def rebake(self, project, sys_env, home, display_name=None):
        """Bake *project*'s file again; the config then belongs to this caller."""
        self.caller.check(project)
        return self._registry.rebake(project, sys_env, home, display_name, self.caller.for_bake())

    def bake_again(self, project, sys_env, home, display_name=None):
        """Bake *project*'s file again for this caller (``apply``), replacing nothing yet."""
        self.caller.check(project)
        return self._registry.bake_again(project, sys_env, home, display_name, self.caller.for_bake())

    def bake_lock(self, project):
        """Return *project*'s bake lock (``apply`` holds it from its bake until it is carried out)."""
        return self._registry.bake_lock(self.caller.check(project))

    def config_changed(self, project):
        """Tell whether a file *project* was baked from changed since (``ps``)."""
        return self._registry.config_changed(self.caller.check(project))

    def unload(self, project, remove_files=False):
        self.caller.check(project)
        return self._registry.unload(project, remove_files)

    def prunable(self, force=False):
        return [(project, why) for project, why in self._registry.prunable(force)
                if may_use(self.caller.uid, project.owner_uid)]
