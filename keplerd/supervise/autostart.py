"""Configs that start with the daemon: every ``*.yaml`` of the autostart dir (SPEC §14).

At boot, after the configs restored from the state dir, each file of the
directory that is not loaded yet is baked as ``keplerctl start -d`` would bake it
and started detached. A file that fails is logged with its errors and skipped;
the others still start. On SIGHUP the directory is scanned again and the files
added since are started (and the ones that failed are tried again).

A config already loaded (restored from the state dir) is left as it is: its
snapshot is not re-baked, and services the user stopped stay stopped.

Autostarted configs are baked with a fixed system env, ``AUTOSTART_ENV``, not the
daemon's own environment (which must never leak into services, SPEC §3), and
with root's home for ``~``.
"""

import glob
import logging
import os
import pwd

import gevent

from keplerd import paths
from keplerd.config.errors import ConfigError
from keplerd.model import defaults
from keplerd.supervise import lifecycle

log = logging.getLogger("keplerd.autostart")

AUTOSTART_ENV = {"PATH": defaults.DEFAULT_PATH}


def config_files(directory):
    """Return the ``*.yaml`` files of *directory*, sorted; none when it is None or does not exist."""
    if directory is None:
        return []
    if not os.path.isdir(directory):
        log.debug("autostart directory %s does not exist", directory)
        return []
    return sorted(path for path in glob.glob(os.path.join(glob.escape(directory), "*.yaml"))
                  if os.path.isfile(path))


def start_detached(project):
    """Start every service of *project*, as ``keplerctl start -d`` does."""
    try:
        return lifecycle.start(project)
    except lifecycle.ActionFailed as error:
        log.error("%s: %s", project.name, error)
        return []


class Autostart:
    """Starts the configs of one directory: at boot, then those added before each reload."""

    def __init__(self, registry, directory, start=start_detached):
        self.registry = registry
        self.directory = directory
        self._start = start
        # Files of the directory already loaded or started, so a rescan starts only new ones.
        self._handled = set()

    def scan(self):
        """Start every config of the directory not handled yet; return the paths started."""
        files = config_files(self.directory)
        self._handled &= set(files)  # a file removed and added back counts as new
        started = []
        for path in files:
            if path not in self._handled and self._launch(path):
                started.append(path)
            # Starting a config (and, for the zygote-less fallback, reading a bake) runs
            # on the hub between waits: let the watchdog and clients have a turn.
            gevent.sleep(0)
        return started

    def _launch(self, path):
        """Bake and start the config at *path*; return whether it was started."""
        if paths.config_id(path) in self.registry.projects:
            log.debug("%s is already loaded", path)
            self._handled.add(path)
            return False
        try:
            project = self.registry.get_or_bake(path, dict(AUTOSTART_ENV), _root_home(), display_name=path)
        except ConfigError as error:
            for line in error.errors:
                log.error("%s", line)
            log.error("skipping %s", path)
            return False
        except OSError as error:
            log.error("cannot load %s: %s", path, error)
            return False
        log.info("starting %s", path)
        self._handled.add(path)
        self._start(project)
        return True


def _root_home():
    try:
        return pwd.getpwuid(0).pw_dir
    except KeyError:
        return "/root"
