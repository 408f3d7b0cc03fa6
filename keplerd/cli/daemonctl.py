"""keplerctl daemon start | stop | restart | status."""

import json
import os
import subprocess
import sys
import time

from keplerd import paths
from keplerd.cli.client import Client, CommandError, DaemonUnreachable, is_running
from keplerd.units import format_age

STOP_TIMEOUT = 300.0
POLL_INTERVAL = 0.02


def _daemon_command():
    """Return how to run keplerd: the script beside keplerctl (a venv, ``make install``), else ``-m``."""
    beside = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "keplerd")
    if os.path.basename(sys.argv[0]) == "keplerctl" and os.access(beside, os.X_OK):
        return [beside]
    return [sys.executable, "-m", "keplerd"]


def start(context):
    """Run keplerd: in the foreground, or with -d in the background until its socket answers."""
    if is_running():
        raise CommandError(f"keplerd is already running on {paths.socket_path(paths.state_dir())}")
    command = _daemon_command()
    if not context.args.detach:
        os.execv(command[0], command)
    # keplerd --daemonize returns once the daemon is ready, or prints why it is not.
    return subprocess.run([*command, "--daemonize"], stdin=subprocess.DEVNULL).returncode


def stop(context):
    """Stop every service gracefully (remembering which were up), then keplerd."""
    with Client() as client:
        pid = client.call({"type": "daemon_status"})["pid"]
        client.call({"type": "daemon_stop"})
    _wait_gone(pid)
    return 0


def _wait_gone(pid):
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if not _running(pid):
            return
        time.sleep(POLL_INTERVAL)
    raise CommandError(f"keplerd (pid {pid}) is still running after {STOP_TIMEOUT:.0f}s")


def _running(pid):
    """Tell whether *pid* still runs (a zombie waiting for its parent to reap it does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def restart(context):
    """Stop keplerd (if it runs), then start it again."""
    try:
        stop(context)
    except DaemonUnreachable:
        pass  # not running: just start it
    return start(context)


def status(context):
    """Show pid, uptime, version, socket and loaded configs; exit 1 when not running."""
    try:
        with Client() as client:
            info = client.call({"type": "daemon_status"})
    except DaemonUnreachable as error:
        raise CommandError(str(error)) from None
    if context.args.json:
        info.pop("ok", None)
        print(json.dumps(info, indent=2))
        return 0
    print(f"keplerd {info['version']} running (pid {info['pid']}), up {format_age(info['uptime'])}")
    print(f"socket: {info['socket']}")
    configs = info["configs"]
    print(f"configs: {len(configs)}")
    for config in configs:
        print(f"  {config['config']}  {config['running']}/{config['total']} running")
    return 0
