"""Kepler against supervisord, circus and pm2, side by side: the benchmark of issue #11.

    python bench/run.py                      # the full run (3 repetitions), ~15 minutes
    python bench/run.py --quick              # 1 repetition, smaller N: a few minutes
    python bench/run.py --only kepler --scenarios S1,S3
    python bench/run.py --only kepler --scenarios C   # the costs of Kepler's capabilities alone

Each tool runs as a whole product (its own daemon and CLI), with a fresh daemon and
scratch dir for every scenario of every repetition; the tools take turns inside each
scenario (interleaved), and the first tool rotates from one repetition to the next
so that none always runs first on a warm or cold machine. The peers are installed
into bench/.scratch/ when missing. Results: bench/results/<name>.md and .json.
"""

import argparse
import dataclasses
import datetime
import functools
import json
import os
import shutil
import subprocess
import sys
import time

import capabilities
import procs
import report
import scenarios
from peers import MANAGERS
from scenarios import QUICK, Context, Settings
from tools import install_kepler, install_missing, locate

HERE = os.path.dirname(os.path.abspath(__file__))
SCRATCH = os.path.join(HERE, ".scratch")
RESULTS = os.path.join(HERE, "results")
ROOT = os.path.dirname(HERE)
README = os.path.join(ROOT, "README.md")
TEARDOWN_TIMEOUT = 30.0


def scenario_table(settings):
    """Return ``(id, run, limit)`` per scenario: *limit* measures the physical limit, if any."""
    table = [(f"S1-{n}", functools.partial(scenarios.start_many, n=n), None) for n in settings.start_many]
    return table + [
        ("S2", scenarios.idle, None),
        ("S3", scenarios.log_throughput, scenarios.cat_limit),
        ("S4", scenarios.crash_restart, scenarios.loop_limit),
        ("S5", scenarios.status_latency, scenarios.interpreter_limit),
        ("S6", scenarios.stop_all, None),
        ("S7", scenarios.scale, None),
        ("S9", scenarios.followers, None),
        ("C1", capabilities.apply_one, None),
        ("C2", capabilities.reexec_pause, None),
        ("C3", capabilities.scrape, None),
        ("C4", capabilities.idle_metered, None),
        ("C5", capabilities.rolling_restart, None),
    ]


# -- one run -------------------------------------------------------------------------------


def fresh_dir(name):
    path = os.path.join(SCRATCH, "runs", name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def run_tool(scenario_id, function, cls, rep, context, tools, keep):
    """Run one scenario against one tool in a fresh scratch dir; return the run's record."""
    workdir = fresh_dir(f"r{rep}-{scenario_id}-{cls.name}")
    manager = cls(workdir, tools)
    record = {"rep": rep, "scenario": scenario_id, "tool": cls.name, "metrics": {}, "errors": []}
    began = time.monotonic()
    applicable = True
    try:
        record["metrics"] = function(manager, context)
    except scenarios.NotApplicable:
        applicable = False
    except Exception as error:  # one tool's failure is a result, not the end of the run
        record["errors"].append(f"{type(error).__name__}: {error}")
    finally:
        record["errors"] += teardown(manager)
    if not applicable:
        shutil.rmtree(workdir, ignore_errors=True)
        return None
    record["seconds"] = round(time.monotonic() - began, 1)
    if not record["errors"] and not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return record


def run_limit(scenario_id, function, rep, context):
    """Measure a scenario's physical limit (no manager involved)."""
    workdir = fresh_dir(f"r{rep}-{scenario_id}-limit")
    record = {"rep": rep, "scenario": scenario_id, "tool": report.LIMIT, "metrics": {}, "errors": []}
    try:
        record["metrics"] = function(workdir, context)
    except (scenarios.Incorrect, subprocess.CalledProcessError, OSError) as error:
        record["errors"].append(f"{type(error).__name__}: {error}")
    shutil.rmtree(workdir, ignore_errors=True)
    return record


def teardown(manager):
    """Stop the daemon with its own command, then check /proc that nothing of the run is left.

    Returns the errors: a shutdown that failed, processes that survived it (which are
    then killed by pid; they are in our subtree, so no pid can have been reused).
    """
    errors = []
    pids = manager.manager_pids_or_none()
    if pids and any(procs.alive(pid) for pid in pids):
        try:
            manager.shutdown()
        except Exception as error:  # reported; the /proc check below cleans up
            errors.append(f"shutdown: {type(error).__name__}: {error}")
    keep = {manager.daemon.pid} if manager.daemon is not None else set()
    procs.reap_orphans(keep)
    left = [proc for proc in procs.subtree() if proc.alive]
    if left:
        sample = ", ".join(" ".join(proc.cmdline)[:60] for proc in left[:3])
        errors.append(f"{len(left)} processes left after the daemon's shutdown: {sample}")
        procs.kill_all(left)
        procs.wait_until(lambda: not any(proc.alive for proc in procs.subtree()), TEARDOWN_TIMEOUT)
    if manager.daemon is not None:
        manager.daemon.wait()
    procs.reap_orphans()
    return errors


def describe(record):
    metrics = " ".join(f"{key}={value:.4g}" for key, value in record["metrics"].items())
    errors = "".join(f"\n    ERROR {error}" for error in record["errors"])
    return f"[rep {record['rep']}] {record['scenario']:<7} {record['tool']:<12} {metrics}{errors}"


# -- the whole run -------------------------------------------------------------------------


def run_all(settings, chosen_tools, chosen_scenarios, tools, keep):
    data_file = os.path.join(SCRATCH, "data", f"lines-{settings.log_lines}.txt")
    if any(scenario_id == "S3" for scenario_id, _, _ in chosen_scenarios):
        scenarios.make_data_file(data_file, settings.log_lines)
    context = Context(settings, data_file)
    runs = []
    for rep in range(1, settings.reps + 1):
        shift = (rep - 1) % len(chosen_tools)
        order = chosen_tools[shift:] + chosen_tools[:shift]
        for scenario_id, function, limit in chosen_scenarios:
            if limit is not None:
                runs.append(run_limit(scenario_id, limit, rep, context))
                say(describe(runs[-1]))
            for name in order:
                record = run_tool(scenario_id, function, MANAGERS[name], rep, context, tools, keep)
                if record is not None:
                    runs.append(record)
                    say(describe(record))
    return runs


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 repetition, smaller N, shorter windows")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, or 1 with --quick)")
    parser.add_argument("--only", help="comma-separated tools (default: kepler,supervisord,circus,pm2)")
    parser.add_argument("--scenarios", help="comma-separated scenario ids or prefixes, e.g. S1,S3")
    parser.add_argument("--keep", action="store_true", help="keep every scratch dir (failed runs are always kept)")
    parser.add_argument("--out", help="results name (default: latest for a full run, else partial)")
    parser.add_argument("--update-readme", action="store_true", help="put the table into README.md")
    parser.add_argument("--render", metavar="NAME", help="only write bench/results/NAME.md again from NAME.json")
    return parser.parse_args(argv)


def choose(args, settings):
    tools = list(MANAGERS)
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - set(tools)
        if unknown:
            raise SystemExit(f"bench: unknown tool(s): {', '.join(sorted(unknown))} (known: {', '.join(tools)})")
        tools = [tool for tool in tools if tool in wanted]
    table = scenario_table(settings)
    if args.scenarios:
        prefixes = args.scenarios.upper().split(",")
        table = [item for item in table if any(item[0].startswith(prefix) for prefix in prefixes)]
        if not table:
            raise SystemExit(f"bench: no scenario matches {args.scenarios}")
    return tools, table


def say(text):
    print(text, file=sys.stderr, flush=True)


def main(argv=None):
    args = parse_args(argv)
    if args.render:
        return render(args.render, args.update_readme)
    settings = QUICK if args.quick else Settings()
    if args.reps:
        settings = dataclasses.replace(settings, reps=args.reps)
    chosen_tools, chosen_scenarios = choose(args, settings)
    full = settings == Settings() and len(chosen_tools) == len(MANAGERS) and not args.scenarios
    name = args.out or ("latest" if full else "partial")

    tools = locate(SCRATCH, ROOT)
    if "kepler" in chosen_tools:
        install_kepler(SCRATCH, ROOT)
    install_missing(SCRATCH, tools, chosen_tools)
    procs.become_subreaper()
    began = time.monotonic()
    result = {"date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
              "machine": procs.machine(),
              "versions": {tool: MANAGERS[tool].version(tools) for tool in chosen_tools},
              "fairness": {tool: MANAGERS[tool].fairness for tool in chosen_tools},
              "settings": dataclasses.asdict(settings), "tools": chosen_tools}
    say(f"bench: {', '.join(chosen_tools)} × {', '.join(s[0] for s in chosen_scenarios)} × {settings.reps} rep(s)")
    result["runs"] = run_all(settings, chosen_tools, chosen_scenarios, tools, args.keep)
    result["minutes"] = (time.monotonic() - began) / 60
    result["loadavg_end"] = procs.machine()["loadavg"]
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as file:
        json.dump(result, file, indent=1)
    publish(result, name, args.update_readme)
    # A peer that loses lines is a finding of the benchmark (marked ! in the table);
    # the run fails only when Kepler, or a physical-limit baseline, fails its checks.
    return 1 if any(run["errors"] for run in result["runs"] if run["tool"] in ("kepler", report.LIMIT)) else 0


def render(name, update_readme):
    """Write the report of an earlier run again from its JSON (after a change to the report's wording)."""
    with open(os.path.join(RESULTS, f"{name}.json")) as file:
        publish(json.load(file), name, update_readme)
    return 0


def publish(result, name, update_readme):
    """Write ``<name>.md`` (and the README's table) from *result*, and print it."""
    settings = Settings(**{key: tuple(value) if isinstance(value, list) else value
                           for key, value in result["settings"].items()})
    text = report.markdown(result, settings)
    with open(os.path.join(RESULTS, f"{name}.md"), "w") as file:
        file.write(f"# Kepler benchmark ({name})\n\n{text}")
    if update_readme:
        report.update_readme(README, text)
    print(text)

if __name__ == "__main__":
    sys.exit(main())
