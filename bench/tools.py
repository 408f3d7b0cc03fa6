"""Where each tool's programs are, and installing them into bench/.scratch.

Kepler is measured as a user gets it: a regular (not editable) install of this
working tree into its own venv, refreshed on every run, without the test extras.
(The editable install of .venv adds an import hook to every interpreter start:
~15 ms per keplerctl call that no user pays.) supervisord and circus go into
another venv, pm2 into a local npm prefix, when missing. The peers' versions are
pinned so that runs on different days compare the same products; bump them on
purpose and say so with the new table.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

PEER_PYPI = ("supervisor==4.3.0", "circus==0.19.0")
PEER_NPM = ("pm2@7.0.4",)


@dataclass(frozen=True)
class Tools:
    kepler_bin: str      # keplerd and keplerctl
    peers_bin: str       # supervisord, supervisorctl, circusd, circusctl
    pm2: str             # the pm2 CLI
    path: str            # PATH of every tool: node must be found by pm2
    kepler_commit: str   # the commit of the working tree under test

    def output(self, argv):
        """Return what *argv* prints (stdout, stripped); for version strings."""
        return subprocess.run(argv, capture_output=True, text=True, env={"PATH": self.path},
                              stdin=subprocess.DEVNULL).stdout.strip()


def locate(scratch, source):
    """Return where the tools are (or will be, once installed); *source* is Kepler's working tree."""
    kepler_bin = os.path.join(scratch, "kepler", "bin")
    peers_bin = os.path.join(scratch, "venv", "bin")
    pm2 = os.path.join(scratch, "npm", "node_modules", ".bin", "pm2")
    base = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    return Tools(kepler_bin, peers_bin, pm2, base, kepler_commit(source))


def install_missing(scratch, tools, wanted):
    """Install the peers among *wanted* (tool names) that are not in *scratch* yet."""
    if {"supervisord", "circus"} & set(wanted) and not _has_python_peers(tools):
        _say("installing supervisor and circus into " + os.path.join(scratch, "venv"))
        venv = os.path.join(scratch, "venv")
        python = _system_python()
        subprocess.run([python, "-m", "venv", venv], check=True)
        _pip(os.path.join(venv, "bin", "python"), "install", *PEER_PYPI)
    if "pm2" in wanted and not os.path.exists(tools.pm2):
        if shutil.which("npm") is None:
            raise SystemExit("bench: pm2 needs node and npm, which are not installed; "
                             "install them, or leave pm2 out: --only kepler,supervisord,circus")
        _say("installing pm2 into " + os.path.join(scratch, "npm"))
        subprocess.run(["npm", "install", "--silent", "--no-fund", "--no-audit", "--prefix",
                        os.path.join(scratch, "npm"), *PEER_NPM], check=True)


def install_kepler(scratch, source):
    """Install the working tree *source* into the scratch Kepler venv, as it is now."""
    venv = os.path.join(scratch, "kepler")
    python = os.path.join(venv, "bin", "python")
    marker = os.path.join(venv, ".setup-cfg-sha256")
    with open(os.path.join(source, "setup.cfg"), "rb") as file:
        setup_hash = hashlib.sha256(file.read()).hexdigest()
    if not os.path.exists(python):
        _say("creating the Kepler venv " + venv)
        subprocess.run([_system_python(), "-m", "venv", venv], check=True)
        _pip(python, "install", "--upgrade", "pip")
    if _read(marker) != setup_hash:
        _pip(python, "install", source)          # dependencies changed (or first install)
        with open(marker, "w") as file:
            file.write(setup_hash)
    else:
        _pip(python, "install", "--no-deps", "--force-reinstall", source)


def kepler_commit(source):
    """Return the commit of *source* being measured, with ``-dirty`` if it has changes."""
    def git(*args):
        return subprocess.run(["git", "-C", source, *args], capture_output=True, text=True).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + ("-dirty" if git("status", "--porcelain", "--", "keplerd",
                                                                  "setup.cfg", "setup.py") else "")


def _pip(python, *args):
    subprocess.run([python, "-m", "pip", "--quiet", "--disable-pip-version-check", *args], check=True)


def _read(path):
    try:
        with open(path) as file:
            return file.read()
    except FileNotFoundError:
        return None


def _has_python_peers(tools):
    return all(os.path.exists(os.path.join(tools.peers_bin, program))
               for program in ("supervisord", "supervisorctl", "circusd", "circusctl"))


def _system_python():
    """The interpreter behind our venv: the peers' venv must not inherit Kepler's packages."""
    return os.path.join(sys.base_prefix, "bin", f"python{sys.version_info.major}.{sys.version_info.minor}")


def _say(text):
    print(f"bench: {text}", file=sys.stderr, flush=True)
