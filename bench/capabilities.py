"""What Kepler's capabilities cost (issue #25, target 7), as rows of the same table.

The peers have none of these (no apply of an edited config, no re-exec that keeps
the services, no Prometheus endpoint, no rolling restart by health), so each
scenario raises ``NotApplicable`` for them and their cells read "–". Each runs
the Kepler of the run (the installed working tree) through its own CLI, like the
other scenarios, and checks what it measured: the pids an apply must not touch,
the lines a re-exec must not lose, every service in a scrape, every replica
healthy after a roll. The standalone scripts (bench/apply.py, reexec.py,
stats.py, replicas.py) break each cost down further.
"""

import json
import os
import socket
import statistics
import time

import reexec
from peers.base import write_file
from procs import wait_until
from scenarios import SLEEP, Incorrect, NotApplicable, sleepers, timed, wait_all_running

CHANGED = "s042"      # the service an apply changes
SCRAPE_TIMEOUT = 30.0
SETTLE_S = 1.0        # after start-up, before a window opens


def _kepler_only(manager):
    if manager.name != "kepler":
        raise NotApplicable(f"{manager.name} has no such capability")


def _ps(manager):
    return {row["name"]: row for row in json.loads(manager.run(manager.ctl("-f", manager.config_file, "ps",
                                                                              "--json")).stdout)}


# -- C1 apply ------------------------------------------------------------------------------


def _apply_config(manager, version):
    services = {service.name: {"command": list(service.argv), "environment": [f"INDEX={index}"]}
                for index, service in enumerate(manager.services)}
    services[CHANGED]["environment"].append(f"VERSION={version}")
    write_file(manager.config_file, json.dumps({"services": services}, indent=1))


def apply_one(manager, context):
    """`keplerctl apply` of one changed service among N: command to that service running again."""
    _kepler_only(manager)
    settings = context.settings
    manager.configure(sleepers(settings.apply_n))
    _apply_config(manager, 0)
    manager.start_daemon()
    manager.run(manager.ctl("-f", manager.config_file, "start", "-d", "--wait"))
    times = []
    for version in range(1, settings.applies + 1):
        before = _ps(manager)
        _apply_config(manager, version)
        times.append(timed(manager, manager.ctl("-f", manager.config_file, "apply")) * 1000)
        after = _ps(manager)
        if after[CHANGED]["status"] != "running" or after[CHANGED]["pid"] == before[CHANGED]["pid"]:
            raise Incorrect(f"apply {version}: {CHANGED} was not restarted")
        moved = [name for name in before if name != CHANGED and after[name]["pid"] != before[name]["pid"]]
        if moved:
            raise Incorrect(f"apply {version}: {len(moved)} unchanged services restarted, e.g. {moved[0]}")
    return {"apply_ms": statistics.median(times)}


# -- C2 daemon reexec ----------------------------------------------------------------------


def _writers_config(manager, count, writers):
    script = write_file(manager.path("writer.py"), reexec.WRITER)
    services = {}
    for index in range(count):
        if index < writers:
            name = f"w{index:03d}"
            services[name] = {"command": ["/usr/bin/python3", script, manager.path(f"count-{name}")]}
        else:
            services[f"s{index:03d}"] = {"command": list(SLEEP)}
    write_file(manager.config_file, json.dumps({"services": services}, indent=1))
    return sorted(name for name in services if name.startswith("w"))


def _stored(manager, name):
    """``[(epoch_ms, number)]`` of a writer's stored lines."""
    out = manager.run(manager.ctl("-f", manager.config_file, "logs", "--no-hook", "--json", name)).stdout
    return [(record["time"], int(record["text"])) for record in map(json.loads, out.splitlines())]


def reexec_pause(manager, context):
    """`daemon reexec` with N services, W of them printing every 5 ms: the longest gap in their stored lines."""
    _kepler_only(manager)
    settings = context.settings
    writers = _writers_config(manager, settings.reexec_n, settings.reexec_writers)
    manager.start_daemon()
    manager.run(manager.ctl("-f", manager.config_file, "start", "-d", "--wait"))
    before = {name: row["pid"] for name, row in _ps(manager).items()}
    time.sleep(SETTLE_S)
    moments, commands = [], []
    for _ in range(settings.reexecs):
        moments.append(time.time() * 1000)
        commands.append(timed(manager, manager.ctl("daemon", "reexec")))
        time.sleep(0.5)  # lines flow again before the next one
    after = {name: row["pid"] for name, row in _ps(manager).items()}
    if after != before:
        raise Incorrect("daemon reexec changed the services' pids")
    logs = {name: _stored(manager, name) for name in writers}
    broken = [name for name, entries in logs.items() if [n for _, n in entries] != list(range(1, len(entries) + 1))]
    if broken:
        raise Incorrect(f"{len(broken)} writers lost or repeated lines across the re-execs, e.g. {broken[0]}")
    pauses = [max(reexec.pause_around(logs[name], moment) for name in writers) for moment in moments]
    return {"pause_ms": statistics.median(pauses), "command_s": statistics.median(commands)}


# -- C3 one scrape, C4 idle with metrics on --------------------------------------------------


def _metered_daemon(manager):
    """Start keplerd serving /metrics on a Unix socket in the scratch dir; return the socket's path."""
    path = manager.path("metrics.sock")
    manager.spawn_daemon([os.path.join(manager.tools.kepler_bin, "keplerd"), "--metrics-listen", path])
    manager.wait_ready(manager.ctl("daemon", "status"))
    return path


def _scrape(path):
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(SCRAPE_TIMEOUT)
        client.connect(path)
        client.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        chunks = []
        while chunk := client.recv(1 << 16):
            chunks.append(chunk)
    return b"".join(chunks)


def scrape(manager, context):
    """One `GET /metrics` of N running services: request to last byte."""
    _kepler_only(manager)
    settings = context.settings
    manager.configure(sleepers(settings.scrape_n))
    path = _metered_daemon(manager)
    manager.run(manager.start_command())
    wait_all_running(manager)
    times = []
    for _ in range(settings.scrapes):
        began = time.perf_counter()
        body = _scrape(path)
        times.append((time.perf_counter() - began) * 1000)
        time.sleep(0.2)
    up = body.count(b"\nkepler_service_up{")
    if up != settings.scrape_n:
        raise Incorrect(f"a scrape shows {up} services, expected {settings.scrape_n}")
    return {"scrape_ms": statistics.median(times), "size_kib": len(body) / 1024}


def _schedstat_seconds(pid):
    """CPU time of *pid* at ns precision: an idle daemon spends microseconds, below a clock tick."""
    with open(f"/proc/{pid}/schedstat") as file:
        return int(file.read().split()[0]) / 1e9


def idle_metered(manager, context):
    """With metrics on and N idle services, nobody scraping: the daemon's CPU over the S2 window."""
    _kepler_only(manager)
    settings = context.settings
    manager.configure(sleepers(settings.idle_n))
    _metered_daemon(manager)
    manager.run(manager.start_command())
    wait_all_running(manager)
    time.sleep(settings.idle_settle_s)
    before = _schedstat_seconds(manager.daemon.pid)
    time.sleep(settings.idle_window_s)
    return {"idle_cpu_ms": (_schedstat_seconds(manager.daemon.pid) - before) * 1000}


# -- C5 rolling restart --------------------------------------------------------------------


def rolling_restart(manager, context):
    """`restart --rolling` of N replicas with a 200 ms health check: until the last one is healthy again."""
    _kepler_only(manager)
    count = context.settings.roll_replicas
    check = {"test": ["/usr/bin/sh", "-c", "kill -0 $(cat pid.$KEPLER_REPLICA)"], "interval": "200ms",
             "retries": 5}
    service = {"command": ["/usr/bin/sh", "-c", "echo $$ > pid.$KEPLER_REPLICA; exec /usr/bin/sleep 3600"],
               "replicas": count, "healthcheck": check}
    write_file(manager.config_file, json.dumps({"services": {"web": service}}, indent=1))
    manager.start_daemon()
    manager.run(manager.start_command())
    def all_healthy():
        return sum(row["status"] == "healthy" for row in _ps(manager).values()) == count

    if not wait_until(all_healthy, 60, interval=0.05):
        raise Incorrect(f"the {count} replicas are not all healthy after 60 s")
    before = {name: row["pid"] for name, row in _ps(manager).items()}
    roll = timed(manager, manager.ctl("-f", manager.config_file, "restart", "--rolling", "-d", "web"))
    after = _ps(manager)
    unchanged = [name for name, row in after.items() if row["pid"] == before.get(name) or row["status"] != "healthy"]
    if unchanged:
        raise Incorrect(f"after the roll, {len(unchanged)} replicas kept their pid or are not healthy")
    return {"roll_s": roll, "per_instance_ms": roll / count * 1000}
