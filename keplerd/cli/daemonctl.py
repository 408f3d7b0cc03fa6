"""keplerctl daemon start | stop | restart | reexec | status."""

import json
import os
import subprocess
import sys
import time

from keplerd import paths
from keplerd.cli.client import Client, CommandError, ConnectionLost, DaemonUnreachable, is_running
from keplerd.units import format_age

STOP_TIMEOUT = 300.0
# The daemon waits up to 30 s for a quiet moment, then the new image boots: allow for both.
REEXEC_TIMEOUT = 90.0
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


def reexec(context):
    """Hand the running services to the keplerd installed now, in the same process (SPEC §20)."""
    with Client() as client:
        before = client.call({"type": "daemon_status"})
        try:
            client.call({"type": "daemon_reexec"})  # answers only to say why it could not
        except ConnectionLost:
            pass  # the exec hung up on us: the new image is starting
    after = _wait_generation(before["generation"])
    print(f"keplerd re-executed: pid {after['pid']}, version {before['version']} -> {after['version']}, "
          f"{sum(config['running'] for config in after['configs'])} service(s) running, none restarted")
    return 0


def _wait_generation(generation):
    """Return the daemon's status once a newer image than *generation* answers."""
    deadline = time.monotonic() + REEXEC_TIMEOUT
    while time.monotonic() < deadline:
        try:
            with Client() as client:
                info = client.call({"type": "daemon_status"})
            if info["generation"] > generation:
                return info
        except (DaemonUnreachable, ConnectionLost):
            pass  # between images: the socket stays, but a connection may be cut
        time.sleep(POLL_INTERVAL)
    raise CommandError(f"keplerd did not come back from re-exec within {REEXEC_TIMEOUT:.0f}s (see its log)")


def status(context):
    """Show pid, uptime, version, socket, loop lag and loaded configs; exit 1 when not running."""
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
    print(f"loop lag: {info['loop_lag_ms']:.1f} ms now, {info['loop_lag_max_ms']:.1f} ms at worst in the last minute")
    configs = info["configs"]
    print(f"configs: {len(configs)}")
    for config in configs:
        print(f"  {config['config']}  {config['running']}/{config['total']} running")
    return 0
