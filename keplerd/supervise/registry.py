"""The configs a daemon has loaded: found by path, baked on first use, restored at boot."""

import collections
import logging
import os

from gevent.lock import RLock

from keplerd import paths
from keplerd.sources import SourceCheck
from keplerd.supervise.project import Project
from keplerd.supervise.system import System

log = logging.getLogger("keplerd.registry")


class NotLoaded(Exception):
    """No config is loaded for that path."""


class Registry:
    """Every loaded ``Project`` of one state dir, by config id."""

    def __init__(self, state_dir, bake_options=None, system=None):
        self.state_dir = state_dir
        self.system = system or System()   # the OS seam every project uses
        # Daemon settings that shape a bake (keplerd.conf): Lua limits, default stop grace period.
        self.bake_options = dict(bake_options or {})
        self.projects = {}
        # One lock per config: a bake may take seconds of Lua, and must not hold up the others.
        self._bake_locks = collections.defaultdict(RLock)
        self._sources = SourceCheck()

    def load_all(self):
        """Load every config that has a snapshot; log and skip the unreadable ones."""
        root = paths.configs_dir(self.state_dir)
        os.makedirs(root, mode=0o770, exist_ok=True)
        for config_id in sorted(os.listdir(root)):
            try:
                self.projects[config_id] = Project.load(self.state_dir, config_id, system=self.system)
            except FileNotFoundError:
                log.warning("config %s has no snapshot; ignoring it", config_id)
            except (OSError, ValueError, KeyError) as error:
                log.error("cannot load config %s: %s", config_id, error)
        return list(self.projects.values())

    def find(self, config_path):
        """Return the loaded project of *config_path*, or raise ``NotLoaded``."""
        project = self.projects.get(paths.config_id(config_path))
        if project is None:
            raise NotLoaded(f"config not loaded: {config_path} (start it first)")
        return project

    def get_or_bake(self, config_path, sys_env, home, display_name=None, caller=None):
        """Return the project of *config_path*, baking the file if it has no snapshot.

        *caller* describes a non-root caller (``keplerd.config.runas``), who then
        owns what is baked; None for root. Whether the caller may use a project
        that already exists is for the control layer to say.
        """
        config_id = paths.config_id(config_path)
        with self._bake_locks[config_id]:
            project = self.projects.get(config_id)
            if project is None:
                project = self.projects[config_id] = self._bake(config_id, config_path, sys_env, home,
                                                                display_name, caller)
            return project

    def rebake(self, project, sys_env, home, display_name=None, caller=None):
        """Replace *project* with a new bake of its file (``recreate``), owned by *caller*."""
        with self._bake_locks[project.id]:
            baked = _bake(project.source_path, sys_env, home, display_name or project.name, self.bake_options,
                          caller)
            self.system.forget_identities()  # a new bake: users and groups may have changed
            fresh = Project.create(self.state_dir, project.id, baked, owner_uid(caller), system=self.system)
            project.logs.close()  # the new snapshot's settings (max_size, store...) take over
            self.projects[project.id] = fresh
            return fresh

    def bake_lock(self, project):
        """Return the lock that keeps bakes of *project*'s file (and applying them) one at a time."""
        return self._bake_locks[project.id]

    def bake_again(self, project, sys_env, home, display_name=None, caller=None):
        """Return a new ``Baked`` of *project*'s file for *caller* (``apply``), changing nothing; raise ConfigError."""
        baked = _bake(project.source_path, sys_env, home, display_name or project.name, self.bake_options, caller)
        baked.snapshot["owner"] = owner_uid(caller)
        return baked

    def config_changed(self, project):
        """Tell whether a file *project* was baked from changed since (``ps``; no re-bake)."""
        return self._sources.changed(project.snapshot.get("sources"))

    def _bake(self, config_id, config_path, sys_env, home, display_name, caller):
        baked = _bake(config_path, sys_env, home, display_name, self.bake_options, caller)
        self.system.forget_identities()  # a new bake: users and groups may have changed
        log.info("baked %s as config %s for uid %s", config_path, config_id, owner_uid(caller))
        return Project.create(self.state_dir, config_id, baked, owner_uid(caller), system=self.system)

    def unload(self, project, remove_files=False):
        """Forget *project*; with *remove_files*, delete its state dir too."""
        self.projects.pop(project.id, None)
        project.close()
        if remove_files:
            import shutil  # here: it loads bz2 and lzma (~0.3 MiB) that a daemon that never prunes does without

            shutil.rmtree(project.paths.root, ignore_errors=True)

    def prunable(self, force=False):
        """Return ``(project, why)`` for each config prune would remove.

        A config goes when its source file is gone or none of its services runs
        (all are in a terminal state); with *force*, every config goes.
        """
        found = []
        for project in self.projects.values():
            if not os.path.exists(project.source_path):
                found.append((project, "config file is gone"))
            elif project.all_terminal():
                found.append((project, "all services stopped"))
            elif force:
                found.append((project, "forced"))
        return found

    def kill_leftovers(self, project):
        """Kill the process groups and cgroups a previous daemon left for *project*'s services.

        Returns the names of the services whose process group was still there.
        """
        killed = []
        for name, saved in project.saved_services().items():
            if self.system.kill_leftover(saved.get("pid"), saved.get("create_time")):
                log.warning("%s/%s: killed leftover process group %s", project.name, name, saved.get("pid"))
                killed.append(name)
        for path in self.system.kill_leftover_cgroups(project.id):
            log.warning("%s: killed leftover cgroup %s", project.name, path)
        return killed


def owner_uid(caller):
    """Return the uid that owns what *caller* bakes: its own, or root's (0) for None."""
    return 0 if caller is None else caller["uid"]


def _bake(config_path, sys_env, home, display_name, options, caller):
    from keplerd import bakery  # first bake: the worker seam

    return bakery.bake(config_path, sys_env, home, display_name, options, caller)
