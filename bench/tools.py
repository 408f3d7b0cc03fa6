"""Where each tool's programs are, and installing the peers into bench/.scratch when missing.

supervisord and circus go into their own venv (they must not share Kepler's), pm2
into a local npm prefix. Versions are pinned so that runs on different days compare
the same products; bump them on purpose and say so with the new table.
"""

import os
import subprocess
import sys
from dataclasses import dataclass

PEER_PYPI = ("supervisor==4.3.0", "circus==0.19.0")
PEER_NPM = ("pm2@7.0.4",)


@dataclass(frozen=True)
class Tools:
    kepler_bin: str      # keplerd and keplerctl (the venv the benchmark runs in)
    peers_bin: str       # supervisord, supervisorctl, circusd, circusctl
    pm2: str             # the pm2 CLI
    path: str            # PATH of every tool: node must be found by pm2

    def output(self, argv):
        """Return what *argv* prints (stdout, stripped); for version strings."""
        return subprocess.run(argv, capture_output=True, text=True, env={"PATH": self.path},
                              stdin=subprocess.DEVNULL).stdout.strip()


def locate(scratch):
    kepler_bin = os.path.dirname(sys.executable)
    peers_bin = os.path.join(scratch, "venv", "bin")
    pm2 = os.path.join(scratch, "npm", "node_modules", ".bin", "pm2")
    base = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    return Tools(kepler_bin, peers_bin, pm2, base)


def install_missing(scratch, tools, wanted):
    """Install the peers among *wanted* (tool names) that are not in *scratch* yet."""
    if {"supervisord", "circus"} & set(wanted) and not _has_python_peers(tools):
        _say("installing supervisor and circus into " + os.path.join(scratch, "venv"))
        venv = os.path.join(scratch, "venv")
        python = _system_python()
        subprocess.run([python, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", "install", "--quiet", *PEER_PYPI],
                       check=True)
    if "pm2" in wanted and not os.path.exists(tools.pm2):
        _say("installing pm2 into " + os.path.join(scratch, "npm"))
        subprocess.run(["npm", "install", "--silent", "--no-fund", "--no-audit", "--prefix",
                        os.path.join(scratch, "npm"), *PEER_NPM], check=True)


def _has_python_peers(tools):
    return all(os.path.exists(os.path.join(tools.peers_bin, program))
               for program in ("supervisord", "supervisorctl", "circusd", "circusctl"))


def _system_python():
    """The interpreter behind our venv: the peers' venv must not inherit Kepler's packages."""
    return os.path.join(sys.base_prefix, "bin", f"python{sys.version_info.major}.{sys.version_info.minor}")


def _say(text):
    print(f"bench: {text}", file=sys.stderr, flush=True)
