"""The long attacks of issue #24, kept runnable: a soak of keplerd under hostile input and faults.

Run as root from the repository, with the project's venv (about 10 minutes with
the defaults on 2 cores; each attack can be sized or skipped):

    .venv/bin/python bench/soak.py [--frames 10000] [--configs 1000] [--kills 20]
                                   [--services 1000] [--followers 50] [--only kills,disk]

Attacks, each against a fresh private daemon (a temporary state dir):

* frames: random requests of every type with random field types, random raw
  bytes, deep nesting, NaN; every answer must be clean (no internal error) and the
  daemon's log free of tracebacks.
* configs: mutated configs and random bytes through ``config check`` (in-process).
* memory: 100 clients announce 16 MiB frames (over the daemon's 4 MiB cap), then 100
  announce 4 MiB ones; each sends 1 MiB and leaves. The daemon's RSS before, while
  held, 2s after they left and SETTLE seconds later.
* pipeline: one client sends 400 ``logs_read`` on a big log without reading the
  answers; the daemon's RSS before, while it is unread, 2s after it left and SETTLE
  seconds later.
* kills: ``kill -9`` of the daemon during start/stop/restart of 50 chatty
  services, KILLS times; after each reboot every service must have exactly one
  process (none duplicated, none orphaned).
* services: 1,000 services started and stopped; nothing of theirs may survive.
* followers: 50 ``keplerctl logs -f`` on a chatty config; each must see every line.
* disk: a full 4 MiB tmpfs state dir, a restart, a ``kill -9``: one process after
  reboot (skipped, with the reason, where tmpfs cannot be mounted).

Prints one line per attack and a JSON summary; exits 1 if any attack found a fault.
"""

import argparse
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

import psutil

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.integration.harness import KEPLERCTL, Kepler, wait_for  # noqa: E402
from tests.robustness import wire  # noqa: E402

CHATTY = "i=0; while :; do echo {name}-$i; i=$((i+1)); sleep 0.01; done"


class Fault(Exception):
    """An attack found what must not happen."""


def daemon(**conf):
    root = tempfile.mkdtemp(prefix="kt-soak-", dir="/tmp")
    os.chmod(root, 0o755)
    with open(os.path.join(root, "keplerd.conf"), "w") as file:
        file.write(f"autostart_dir: {os.path.join(root, 'conf.d')}\n")
        for key, value in conf.items():
            file.write(f"{key}: {value}\n")
    kepler = Kepler(root)
    return kepler


def finish(kepler):
    try:
        kepler.cleanup()
    finally:
        for process in psutil.process_iter():
            try:
                if process.environ().get("KEPLER_STATE_DIR") == kepler.state_dir:
                    process.kill()
            except psutil.Error:
                continue
        subprocess.run(["umount", "-l", kepler.state_dir], capture_output=True)
        shutil.rmtree(kepler.root, ignore_errors=True)


# -- frames ---------------------------------------------------------------------------


def random_json(rng, depth=0):
    """A random JSON value: scalars of every type, hostile text, and (shallow) containers."""
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.randrange(-2**40, 2**40)
    if kind == 3:
        return rng.random() * 1e6
    if kind == 4:
        return "x\0y" if rng.random() < 0.1 else "".join(rng.choice("ab/\\ é.:") for _ in range(rng.randrange(12)))
    if kind == 5:
        return rng.choice(["/tmp/kepler.yaml", "SIGKILL", "9", ""])
    if kind == 6:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 7:
        return {rng.choice(["a", "config", "services", "wait"]): random_json(rng, depth + 1) for _ in range(3)}
    return "SIGKILL"


def attack_frames(count, rng):
    from keplerd.control.handlers import HANDLERS
    from keplerd.control.requests import FIELDS

    kepler = daemon()
    sent = 0
    try:
        kepler.start_daemon()
        before = wire.rss_kib(kepler.daemon.pid)
        types = sorted(set(HANDLERS) - {"daemon_stop"}) + ["nope"]
        sock = wire.hello(wire.connect(kepler))
        while sent < count:
            roll = rng.random()
            if roll < 0.05:
                body = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
            elif roll < 0.08:
                body = b"[" * rng.choice([10, 1000, 100_000])
            elif roll < 0.10:
                body = b'{"id": 1, "request": {"type": "logs_read", "cursor": "x", "wait": NaN}}'
            else:
                request = {"type": rng.choice(types)}
                for key in rng.sample(sorted(FIELDS), rng.randrange(4)):
                    request[key] = random_json(rng)
                body = json.dumps({"id": 1, "request": request}).encode()
            sent += 1
            answer = wire.ask(sock, 1, body)
            if answer is None:
                sock = wire.hello(wire.connect(kepler))
                continue
            if "internal error" in str(answer):
                raise Fault(f"internal error for {body[:200]!r}: {answer}")
        if "Traceback" in kepler.read_daemon_log():
            raise Fault("a traceback in the daemon log")
        return {"frames_sent": sent, "rss_kib_before": before, "rss_kib_after": wire.rss_kib(kepler.daemon.pid)}
    finally:
        finish(kepler)


# -- configs --------------------------------------------------------------------------


def attack_configs(count, rng):
    from keplerd.config.bake import check
    from keplerd.config.errors import ConfigError
    from tests.robustness.test_fuzz_configs import BASE, PATHS, WRONG_TYPES, _mutate

    import copy

    import yaml

    tried = 0
    with tempfile.TemporaryDirectory(prefix="kt-soak-") as scratch:
        path = os.path.join(scratch, "kepler.yaml")
        for _ in range(count):
            tree = copy.deepcopy(BASE)
            for _ in range(rng.randrange(1, 5)):
                mutation = (rng.choice(PATHS), rng.choice(["replace", "delete", "add"]), rng.choice(WRONG_TYPES),
                            rng.choice(["x", "zz", "on"]))
                try:
                    _mutate(tree, mutation)
                except (KeyError, IndexError, TypeError):
                    continue
            with open(path, "w") as file:
                file.write(yaml.safe_dump(tree))
            tried += 1
            try:
                check(path, {}, "/root", lua_time_limit=0.5)
            except ConfigError as error:
                bad = [line for line in error.errors if not line.startswith("kepler.yaml") or "\n" in line]
                if bad:
                    raise Fault(f"unlocated error: {bad[0]!r}") from None
    return {"configs_tried": tried}


# -- memory ---------------------------------------------------------------------------


def settled_rss(kepler, settle):
    """RSS 2 seconds after the hostile clients left, and again *settle* seconds later (nothing delayed)."""
    time.sleep(2)  # a soak, not a test: let the sessions end
    after = wire.rss_kib(kepler.daemon.pid)
    time.sleep(settle)
    return {"rss_kib_after": after, f"rss_kib_after_{settle}s": wire.rss_kib(kepler.daemon.pid)}


def attack_memory(clients, settle):
    """CLIENTS announce a 16 MiB frame (over the cap), then CLIENTS a 4 MiB one (at it), each sending 1 MiB."""
    kepler = daemon()
    try:
        kepler.start_daemon()
        wire.hello(wire.connect(kepler)).close()
        result = {"memory_clients": clients}
        for name, announced in (("over_cap", 16 << 20), ("at_cap", 4 << 20)):
            before = wire.rss_kib(kepler.daemon.pid)
            socks = []
            for _ in range(clients):
                sock = wire.hello(wire.connect(kepler))
                try:
                    sock.sendall(struct.pack(">I", announced) + b"[" + b" " * ((1 << 20) - 1))
                except OSError:
                    pass  # refused at the length prefix: the daemon hung up
                socks.append(sock)
            wire.hello(wire.connect(kepler)).close()
            during = wire.rss_kib(kepler.daemon.pid)
            for sock in socks:
                sock.close()
            result[name] = {"announced": announced, "rss_kib_before": before, "rss_kib_while_held": during,
                            **settled_rss(kepler, settle)}
        return result
    finally:
        finish(kepler)


def attack_pipeline(requests, megabytes, settle):
    """One client asks for a big log REQUESTS times without reading an answer; RSS before, while, after."""
    kepler = daemon()
    try:
        kepler.start_daemon()
        kepler.config(f"""
            services:
              big:
                command: ["bash", "-c", "yes line-of-a-big-log-0123456789 | head -c {megabytes}M; sleep 1000"]
        """)
        kepler.ctl("start", "-d")
        log = os.path.join(kepler.inspect_path(), "logs", "big.stdout.log")
        wait_for(lambda: os.path.exists(log) and os.path.getsize(log) >= megabytes << 20, timeout=600, interval=0.5,
                 message="the big log")
        kepler.ctl("logs", "--tail", "1")  # the log reading code is imported before the first reading of RSS
        before = wire.rss_kib(kepler.daemon.pid)
        sock = wire.hello(wire.connect(kepler))
        config = os.path.join(kepler.workdir, "kepler.yaml")
        cursor = wire.ask(sock, 1, {"type": "logs", "config": config})["response"]["cursor"]
        sock.setblocking(False)
        sent = 0
        for index in range(requests):
            frame = wire.frame({"id": 10 + index, "request": {"type": "logs_read", "cursor": cursor, "wait": 0}})
            try:
                sock.send(frame)
                sent += 1
            except BlockingIOError:
                break  # the daemon stopped reading us: that is the bound working
        time.sleep(5)
        during = wire.rss_kib(kepler.daemon.pid)
        sock.close()
        return {"pipelined_requests": sent, "log_megabytes": megabytes, "rss_kib_before": before,
                "rss_kib_while_held": during, **settled_rss(kepler, settle)}
    finally:
        finish(kepler)


# -- kill -9 loops --------------------------------------------------------------------


def marked(kepler):
    """Return ``{service: [pids]}`` of the live processes carrying this daemon's mark (main processes only)."""
    found = {}
    for process in psutil.process_iter(["status"]):
        try:
            env = process.environ()
            if env.get("KEPLER_STATE_DIR") != kepler.state_dir or process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if process.ppid() == (kepler.daemon.pid if kepler.daemon else -1) or process.ppid() == 1:
                found.setdefault(env["KEPLER_SERVICE_ID"].split("/", 1)[1], []).append(process.pid)
        except (psutil.Error, KeyError):
            continue
    return found


def attack_kills(kills, services, rng):
    kepler = daemon()
    survived = 0
    try:
        kepler.start_daemon()
        body = "".join(f"  s{i}:\n    command: [\"bash\", \"-c\", \"{CHATTY.format(name=f's{i}')}\"]\n"
                       f"    restart: always\n" for i in range(services))
        kepler.config("services:\n" + body)
        kepler.ctl("start", "-d")
        for _ in range(kills):
            action = rng.choice(["start", "stop", "restart"])
            child = subprocess.Popen([KEPLERCTL, action, "-d"] if action != "stop" else [KEPLERCTL, "stop"],
                                     cwd=kepler.workdir, env=kepler.env(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.0, 0.5))
            kepler.kill_daemon()
            child.wait()
            kepler.start_daemon()
            kepler.ctl("start", "-d")
            wait_for(lambda: all(row["status"] == "running" for row in kepler.ps().values()), timeout=120,
                     message="every service running again")
            seen = wait_for(lambda: (found := marked(kepler)) and len(found) == services and found, timeout=60,
                            message="one process per service")
            duplicated = {name: pids for name, pids in seen.items() if len(pids) != 1}
            if duplicated:
                raise Fault(f"after kill {survived + 1}: duplicated or orphaned: {duplicated}")
            survived += 1
        return {"kills_survived": survived, "kill_services": services}
    finally:
        finish(kepler)


# -- many services, followers, disk ---------------------------------------------------


def attack_services(count):
    kepler = daemon()
    try:
        kepler.start_daemon()
        before = wire.rss_kib(kepler.daemon.pid)
        kepler.config("services:\n" + "".join(f"  s{i}:\n    command: [\"sleep\", \"1000\"]\n" for i in range(count)))
        started = time.monotonic()
        kepler.ctl("start", "-d", timeout=600)
        wait_for(lambda: sum(row["status"] == "running" for row in kepler.ps().values()) == count, timeout=600,
                 interval=1.0, message=f"{count} services running")
        up = time.monotonic() - started
        peak = wire.rss_kib(kepler.daemon.pid)
        kepler.ctl("stop", timeout=600)
        left = marked(kepler)
        if left:
            raise Fault(f"{sum(map(len, left.values()))} processes survived the stop")
        return {"services": count, "services_up_seconds": round(up, 1), "rss_kib_before": before,
                "rss_kib_with_services": peak, "rss_kib_after": wire.rss_kib(kepler.daemon.pid)}
    finally:
        finish(kepler)


def attack_followers(count, lines):
    kepler = daemon()
    try:
        kepler.start_daemon()
        kepler.config(f"""
            services:
              talker:
                command: ["bash", "-c", "sleep 2; for i in $(seq 1 {lines}); do echo line-$i; done; sleep 1000"]
        """)
        kepler.ctl("start", "-d")
        outputs = [os.path.join(kepler.root, f"follower-{index}.out") for index in range(count)]
        followers = []
        for output in outputs:
            with open(output, "w") as file:
                followers.append(subprocess.Popen([KEPLERCTL, "logs", "-f"], cwd=kepler.workdir, env=kepler.env(),
                                                  stdout=file, stderr=subprocess.DEVNULL))

        def seen(path):
            with open(path) as file:
                return sum(1 for line in file if "line-" in line)

        try:
            wait_for(lambda: all(seen(output) >= lines for output in outputs), timeout=300, interval=1.0,
                     message="every follower to show every line")
        except AssertionError:
            pass  # counted below
        for follower in followers:
            follower.send_signal(signal.SIGINT)
            follower.wait(timeout=60)
        counts = [seen(output) for output in outputs]
        short = [got for got in counts if got != lines]
        if short:
            raise Fault(f"{len(short)} followers missed lines: {short[:5]} of {lines}")
        return {"followers": count, "lines_checked": sum(counts)}
    finally:
        finish(kepler)


def attack_disk():
    kepler = daemon()
    try:
        os.makedirs(kepler.state_dir)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0770", "tmpfs", kepler.state_dir],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            return {"disk": f"skipped: cannot mount a tmpfs ({mounted.stderr.strip()})"}
        kepler.start_daemon()
        kepler.config("services:\n  victim:\n    command: [\"bash\", \"-c\", \"" + CHATTY.format(name="v") +
                      "\"]\n    restart: always\n")
        kepler.ctl("start", "-d")
        first = kepler.wait_status("victim", "running")["pid"]
        with open(os.path.join(kepler.state_dir, "filler"), "wb", buffering=0) as filler:
            try:
                while True:
                    filler.write(b"\0" * 4096)
            except OSError:
                pass
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: kepler.ps()["victim"]["pid"] not in (None, first), message="the restart")
        time.sleep(1)
        kepler.kill_daemon()
        os.unlink(os.path.join(kepler.state_dir, "filler"))
        kepler.start_daemon()
        kepler.wait_status("victim", "running")
        found = wait_for(lambda: marked(kepler), message="the service's process")
        if len(found.get("victim", [])) != 1:
            raise Fault(f"after a full disk and a crash: {found}")
        return {"disk": "one process after a full disk and a kill -9"}
    finally:
        finish(kepler)


ATTACKS = ("frames", "configs", "memory", "pipeline", "kills", "services", "followers", "disk")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--configs", type=int, default=1_000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--services", type=int, default=1_000)
    parser.add_argument("--followers", type=int, default=50)
    parser.add_argument("--lines", type=int, default=6_000, help="lines each follower must see")
    parser.add_argument("--log-megabytes", type=int, default=300, help="size of the log read by the pipeline")
    parser.add_argument("--settle", type=int, default=35,
                        help="seconds after the hostile clients left for a second RSS reading")
    parser.add_argument("--only", default=",".join(ATTACKS), help="comma-separated attacks to run")
    parser.add_argument("--seed", type=int, default=24)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/soak.py starts keplerd and must run as root")
    rng = random.Random(args.seed)
    runs = {"frames": lambda: attack_frames(args.frames, rng), "configs": lambda: attack_configs(args.configs, rng),
            "memory": lambda: attack_memory(100, args.settle),
            "pipeline": lambda: attack_pipeline(400, args.log_megabytes, args.settle),
            "kills": lambda: attack_kills(args.kills, 50, rng),
            "services": lambda: attack_services(args.services),
            "followers": lambda: attack_followers(args.followers, args.lines), "disk": attack_disk}
    summary, faults = {}, []
    for name in args.only.split(","):
        started = time.monotonic()
        try:
            summary[name] = runs[name]()
        except (Fault, AssertionError) as error:
            faults.append(f"{name}: {error}")
            summary[name] = {"fault": str(error)}
        summary[name]["seconds"] = round(time.monotonic() - started, 1)
        print(f"{name}: {summary[name]}", flush=True)
    print(json.dumps(summary, indent=2))
    return 1 if faults else 0


if __name__ == "__main__":
    sys.exit(main())
