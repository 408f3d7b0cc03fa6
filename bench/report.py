"""Turn the runs into the results table: medians with min–max, each peer's ratio to Kepler.

A run is a dict ``{rep, scenario, tool, metrics, errors}``; the table has one row
per (scenario, metric) and one column per tool. Lower is better for every metric,
so a ratio above 1 means Kepler wins that row.
"""

import re
import statistics
from dataclasses import dataclass

LIMIT = "limit"     # the physical-limit baselines of S3 and S4 (cat, a shell loop)
CPU_TICK = 0.01     # /proc reports CPU time in clock ticks of 10 ms


@dataclass(frozen=True)
class Row:
    scenario: str
    metric: str
    label: str
    unit: str
    target: float = None        # Kepler's target for this row (issue #11), if any
    target_text: str = ""
    of_limit: float = None      # ... as a multiple of the physical limit (issue #25)
    of_best_peer: float = None  # ... as a multiple of the best peer's median (issue #25)


def rows(settings):
    """The table's rows for a run with *settings*."""
    table = []
    for n in settings.start_many:
        big = n == 300
        table += [
            Row(f"S1-{n}", "all_running_s", f"start {n} → status: all running", "s",
                0.9 if big else None, "≤ 0.9 s" if big else ""),
            Row(f"S1-{n}", "returned_s", "start command returned", "s"),
            Row(f"S1-{n}", "cpu_s", "manager CPU", "s"),
            Row(f"S1-{n}", "peak_rss_mib", "manager peak RSS (VmHWM)", "MiB",
                32 if big else None, "≤ 32 MiB" if big else ""),
        ]
    table += [
        Row("S2", "idle_cpu_s", f"{settings.idle_n} idle: manager CPU over {settings.idle_window_s:g} s", "s",
            0.02, "≤ 0.02 s"),
        Row("S2", "rss_mib", "manager RSS", "MiB"),
        Row("S3", "to_disk_s", f"{settings.log_lines:,} lines: writer start → all on disk", "s",
            None, "≤ 1.2× limit, ≤ supervisord", of_limit=1.2),
        Row("S3", "from_command_s", "start command → all on disk", "s"),
        Row("S3", "cpu_s", "manager CPU", "s"),
        Row("S4", "median_ms", f"crash loop: restart interval median ({settings.restarts} restarts, or as "
            f"many as fit in {settings.restart_budget_s:g} s)", "ms", 2, "≤ 2 ms"),
        Row("S4", "p95_ms", "restart interval p95", "ms"),
        Row("S5", "median_ms", f"status command, {settings.status_n} services: median of "
            f"{settings.status_calls} (limit: `python3 -c pass`)", "ms", None, "≤ 2× limit", of_limit=2),
        Row("S5", "version_ms", "CLI `--version` (limit: `python3 -c pass`)", "ms", None, "≤ 1.5× limit",
            of_limit=1.5),
        Row("S6", "returned_s", f"stop {settings.stop_n}: command returned", "s", 0.2, "≤ 0.2 s"),
        Row("S6", "all_gone_s", "stop: no service process left", "s"),
        Row("S7", "all_running_s", f"start {settings.scale_n} → status: all running", "s", None,
            "≤ 0.5× best peer", of_best_peer=0.5),
        Row("S7", "rss_mib", f"manager RSS with {settings.scale_n} running", "MiB", 40, "≤ 40 MiB"),
        Row("S7", "peak_rss_mib", "manager peak RSS (VmHWM)", "MiB"),
        Row("S7", "status_ms", f"status command, {settings.scale_n} services: median of 5", "ms", 100,
            "≤ 100 ms"),
        Row("S7", "all_gone_s", f"stop {settings.scale_n}: no service process left", "s", 1.5, "≤ 1.5 s"),
        Row("S9", "cpu_percent", f"{settings.followers} followers of {settings.follow_rate:,} lines/s: manager "
            f"CPU over {settings.follow_window_s:g} s", "%", 30, "≤ 30 %"),
        Row("C1", "apply_ms", f"`apply` of 1 changed service of {settings.apply_n}: command → it runs again "
            f"(median of {settings.applies})", "ms"),
        Row("C2", "pause_ms", f"`daemon reexec`, {settings.reexec_n} services: longest gap in "
            f"{settings.reexec_writers} writers' stored lines (median of {settings.reexecs})", "ms"),
        Row("C2", "command_s", "`daemon reexec` command → the new image answers", "s"),
        Row("C3", "scrape_ms", f"one `/metrics` scrape of {settings.scrape_n} services (median of "
            f"{settings.scrapes})", "ms"),
        Row("C4", "idle_cpu_ms", f"{settings.idle_n} idle, metrics on, no scrape: manager CPU over "
            f"{settings.idle_window_s:g} s (schedstat)", "ms"),
        Row("C5", "roll_s", f"`restart --rolling` of {settings.roll_replicas} replicas, health check every "
            "200 ms: command returned", "s"),
    ]
    return table


def values(runs, scenario, metric, tool):
    return [run["metrics"][metric] for run in runs
            if run["scenario"] == scenario and run["tool"] == tool and metric in run["metrics"]]


def summarize(runs, settings, tools):
    """Return ``{(scenario, metric): {tool: {median, min, max, n}}}`` for every row."""
    summary = {}
    for row in rows(settings):
        cells = {}
        for tool in (*tools, LIMIT):
            found = values(runs, row.scenario, row.metric, tool)
            if found:
                cells[tool] = {"median": statistics.median(found), "min": min(found), "max": max(found),
                               "n": len(found)}
        if cells:
            summary[(row.scenario, row.metric)] = cells
    return summary


def number(value, unit):
    if unit in ("MiB", "%"):
        return f"{value:.1f}"
    if unit == "ms":
        return f"{value:.1f}" if value < 100 else f"{value:.0f}"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def cell(stats, unit, kepler=None):
    if stats is None:
        return "–"
    text = number(stats["median"], unit)
    if stats["n"] > 1:
        text += f" [{number(stats['min'], unit)}–{number(stats['max'], unit)}]"
    if kepler:
        text += f" ({ratio(stats['median'], kepler['median'], unit)})"
    return text


def ratio(peer, kepler, unit):
    """The peer's median over Kepler's; a zero of Kepler's counts as one tick of CPU time (10 ms)."""
    if kepler > 0:
        return f"{peer / kepler:.1f}×"
    if peer == 0:
        return "="
    return f"≥ {peer / CPU_TICK:.0f}×" if unit == "s" else "∞×"


def verdict(row, cells):
    """Tell whether Kepler's median meets the row's target: ✓ or ✗ (or nothing)."""
    kepler = cells.get("kepler")
    if (row.target is None and row.of_limit is None and row.of_best_peer is None) or kepler is None:
        return row.target_text
    met = row.target is None or kepler["median"] <= row.target
    if row.of_limit is not None:
        if LIMIT not in cells:
            return row.target_text
        met = met and kepler["median"] <= row.of_limit * cells[LIMIT]["median"]
    if row.of_best_peer is not None:
        peers = [stats["median"] for tool, stats in cells.items() if tool not in ("kepler", LIMIT)]
        if not peers:
            return row.target_text
        met = met and kepler["median"] <= row.of_best_peer * min(peers)
    if row.scenario == "S3" and "supervisord" in cells:
        met = met and kepler["median"] <= cells["supervisord"]["median"]
    return f"{row.target_text} {'✓' if met else '✗'}"


def table(summary, settings, tools, failed):
    """The Markdown table; cells of a (scenario, tool) with a correctness failure get a `!`."""
    peers = [tool for tool in tools if tool != "kepler"]
    head = ["scenario", "metric", "unit", "Kepler target", *tools, "physical limit"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows(settings):
        cells = summary.get((row.scenario, row.metric))
        if cells is None:
            continue
        kepler = cells.get("kepler")
        shown = [cell(kepler, row.unit)] if "kepler" in tools else []
        shown += [cell(cells.get(peer), row.unit, kepler) for peer in peers]
        shown = [text + (" !" if (row.scenario, tool) in failed else "") for text, tool in zip(shown, tools)]
        lines.append("| " + " | ".join([row.scenario, row.label, row.unit, verdict(row, cells), *shown,
                                         cell(cells.get(LIMIT), row.unit)]) + " |")
    return "\n".join(lines)


def markdown(result, settings):
    """The whole report: where and when, versions, the table, the settings, the failures."""
    machine = result["machine"]
    tools = result["tools"]
    failed = {(run["scenario"], run["tool"]) for run in result["runs"] if run["errors"]}
    summary = summarize(result["runs"], settings, tools)
    parts = [
        f"Measured {result['date']} on {machine['nproc']} × {machine['cpu']}, {machine['memory_gib']} GiB, "
        f"Linux {machine['kernel']} (load average {machine['loadavg']} at the start, "
        f"{result['loadavg_end']} at the end), {settings.reps} repetition(s), "
        f"{result['minutes']:.0f} minutes.",
        "",
        "Versions: " + "; ".join(result["versions"].values()) + ".",
        "",
        "Cells: median [min–max] over the repetitions, then the peer's median divided by Kepler's "
        "(above 1×: Kepler is faster or leaner). Lower is better everywhere.",
        "",
        table(summary, settings, tools, failed),
    ]
    parts += ["", _limit_notes(values(result["runs"], "S3", "direct_s", LIMIT)), "", HOW, "",
              *[f"- {tool}: {text}." for tool, text in result["fairness"].items()]]
    errors = [f"- rep {run['rep']} {run['scenario']} {run['tool']}: {error}"
              for run in result["runs"] for error in run["errors"]]
    parts += ["", "Correctness: " + ("every check passed." if not errors else "FAILURES (cells marked !):"),
              *errors]
    return "\n".join(parts) + "\n"


HOW = """\
How: every tool runs as a whole product, its own daemon and CLI, with a fresh daemon and scratch dir per
scenario and repetition; tools take turns inside each scenario and the first one rotates between
repetitions. Timers start at the tool's own start (or stop, or status) command; daemon start-up is not
timed. "All running" is the first answer of the tool's own status, asked again 10 ms after each answer,
that calls every service running; /proc must then show exactly N service processes. CPU is utime + stime
of the manager process only (not its services), in 10 ms ticks; RSS from /proc/<pid>/status. S3's writer
notes its start time and execs `cat` on 100-byte numbered lines; all is on disk when the tool's log file
ends with the last line (a stat every 2 ms, and a read of the file's end when it grew); every line is
then compared, in order, with what it wrote (Kepler's `<epoch-ms> ` prefixes must be present and never
go back). S4's service is
bash appending `$EPOCHREALTIME` to a file and exiting 1. Nothing may survive a stop or the daemon's
shutdown: the benchmark is a child subreaper, so every process of a run stays in its subtree, and that
subtree must be empty after each run. Settings per tool:"""


def _limit_notes(direct):
    notes = ["Physical limits: S3, the same writer piped into `cat > file`; S4, a shell loop "
             "running the crashing service back to back; S5, the interpreter alone (`python3 -c pass`). "
             "S9 is Kepler's alone (the peers' follow commands are not driven here). C1–C5 are the costs of "
             "capabilities the peers do not have (apply, re-exec, metrics, rolling restart): Kepler's alone, "
             "each checked (untouched pids, no line lost, every service scraped, every replica healthy)."]
    if direct:
        notes.append(f"Plain `cat data > file` took {number(statistics.median(direct), 's')} s.")
    return " ".join(notes)


def update_readme(readme_path, text):
    """Replace the README's table between the bench markers with *text*."""
    with open(readme_path) as file:
        readme = file.read()
    pattern = re.compile(r"(<!-- bench:begin -->\n).*?(<!-- bench:end -->)", re.S)
    if not pattern.search(readme):
        raise ValueError(f"{readme_path}: no <!-- bench:begin --> … <!-- bench:end --> markers")
    with open(readme_path, "w") as file:
        file.write(pattern.sub(lambda match: match.group(1) + text + match.group(2), readme))
