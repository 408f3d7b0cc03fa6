"""The command line of keplerctl: every command, its flags, and the module that runs it.

Each command's module is imported only when that command runs.
"""

import argparse
import importlib

from keplerd.units import parse_duration, parse_signal


def _runner(module, function):
    def run(context):
        return getattr(importlib.import_module(f"keplerd.cli.{module}"), function)(context)
    return run


def _duration(text):
    try:
        return parse_duration(text)
    except ValueError as error:
        raise _argument_error(error) from None


def _signal(text):
    try:
        return parse_signal(text)
    except ValueError as error:
        raise _argument_error(error) from None


def _count(text):
    if not text.isdigit():
        raise _argument_error(f"invalid count {text!r}: expected a non-negative integer")
    return int(text)


def _moment(text):
    """Return a time as epoch ms: a duration ago (``10m``) or an ISO-8601 time (UTC unless it says)."""
    import time

    try:
        return int((time.time() - parse_duration(text)) * 1000)
    except ValueError:
        pass
    from datetime import UTC, datetime  # only for an ISO time: keep it off the start-up path

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _argument_error(f"invalid time {text!r}: expected a duration ago (10m, 2h) "
                              f"or an ISO-8601 time (2026-11-26T23:51:08Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _argument_error(message):
    return argparse.ArgumentTypeError(str(message))


def _start_flags(parser, verb):
    parser.add_argument("services", nargs="*", metavar="SERVICE", help=f"services to {verb} (default: all)")
    parser.add_argument("-d", "--detach", action="store_true", help="return at once; everything runs in the daemon")
    parser.add_argument("--wait", action="store_true",
                        help="implies -d: return once every startup service is healthy, ready or running, "
                             "or exited 0 (exit 1 at once if one fails, exits non-zero or is killed first)")
    parser.add_argument("--timeout", type=_duration, metavar="DURATION",
                        help="with --wait: give up waiting after DURATION (exit 1, naming what is not ready)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="with --wait: do not print one line per service")


def register(subparsers, parents, only=None):
    """Add the keplerctl commands to *subparsers*: all, or just the one named *only*.

    *parents* hold the global options for use after the command too: ``common``
    (all of them), ``without_f`` for ``logs``, because there ``-f`` is ``--follow``
    (as in docker compose), and ``without_file`` for commands that use no config file.
    Building one command's parser instead of all of them keeps ``keplerctl ps``
    start-up short.
    """

    def add(name, help_text, module, function, parent="common"):
        parser = subparsers.add_parser(name, help=help_text, description=help_text, parents=[parents[parent]])
        parser.set_defaults(run=_runner(module, function))
        return parser

    for name, builder in COMMANDS.items():
        if only is None or name == only:
            builder(add, subparsers, parents)


def _daemon(add, subparsers, parents):
    daemon = subparsers.add_parser("daemon", help="start, stop or inspect keplerd", parents=[parents["without_file"]])
    daemon_commands = daemon.add_subparsers(dest="daemon_command", metavar="ACTION", required=True)
    for name, help_text in (("start", "run keplerd (foreground; -d: in the background)"),
                            ("stop", "stop every service gracefully, then keplerd"),
                            ("restart", "stop keplerd, then start it; services that were up come back"),
                            ("reexec", "replace keplerd with the one installed now; services keep running"),
                            ("status", "show pid, uptime, version, socket and loaded configs")):
        parser = daemon_commands.add_parser(name, help=help_text, description=help_text,
                                            parents=[parents["without_file"]])
        parser.set_defaults(run=_runner("daemonctl", name))
        if name in ("start", "restart"):
            parser.add_argument("-d", "--detach", action="store_true",
                                help="run in the background; return once the socket answers")


def _start(add, subparsers, parents):
    start = add("start", "start services (attached unless -d)", "lifecycle", "start")
    _start_flags(start, "start")
    start.add_argument("--no-deps", action="store_true", help="do not start or wait for dependencies")


def _stop(add, subparsers, parents):
    stop = add("stop", "stop services (all by default)", "lifecycle", "stop")
    stop.add_argument("services", nargs="*", metavar="SERVICE", help="services to stop (default: all)")
    stop.add_argument("-s", "--signal", type=_signal, metavar="SIGNAL",
                      help="signal to send instead of the service's stop_signal (SIGTERM, TERM, 15)")
    stop.add_argument("--clean", action="store_true",
                      help="then run pre_cleanup, remove the config's state dir and unload it")


def _restart(add, subparsers, parents):
    restart = add("restart", "restart services with the baked config", "lifecycle", "restart")
    _start_flags(restart, "restart")
    restart.add_argument("--rolling", action="store_true",
                         help="one instance at a time, each healthy (or up) before the next; "
                              "--timeout: how long to wait for each")


def _scale(add, subparsers, parents):
    scale = add("scale", "set the number of instances of services (web=5 worker=2)", "replicas", "scale")
    scale.add_argument("counts", nargs="+", type=_scale_count, metavar="SERVICE=N",
                       help="service and its new instance count (at least 1)")


def _scale_count(text):
    name, equals, count = text.partition("=")
    if not equals or not name or not count.isdigit() or int(count) < 1:
        raise _argument_error(f"invalid scale {text!r}: expected SERVICE=N with N at least 1")
    return name, int(count)


def _signal_command(add, subparsers, parents):
    command = add("signal", "send a signal to running services without changing their state",
                  "replicas", "signal")
    command.add_argument("signal", type=_signal, metavar="SIGNAL", help="HUP, SIGUSR1, 10 ...")
    command.add_argument("services", nargs="*", metavar="SERVICE", help="services or instances (default: all)")
    command.add_argument("--group", action="store_true", help="signal the whole process group, not the main process")


def _exec(add, subparsers, parents):
    command = add("exec", "run a one-off command the way a service runs (keplerctl exec web -- sh)",
                  "exec", "exec_command")
    command.add_argument("service", metavar="SERVICE", help="service or instance (web.2); web: its first instance")
    command.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]",
                         help="the command and its arguments")


def _recreate(add, subparsers, parents):
    add("recreate", "re-bake the config from its file and the current environment", "lifecycle", "recreate")


def _apply(add, subparsers, parents):
    apply = add("apply", "re-bake the config; restart only the services whose definition changed", "apply",
                "apply")
    _start_flags(apply, "apply")
    apply.add_argument("--dry-run", action="store_true", help="only print the plan; change nothing")


def _ps(add, subparsers, parents):
    ps = add("ps", "list services and their status", "views", "ps")
    ps.add_argument("-a", "--all", action="store_true", help="every loaded config, with a CONFIG column")
    ps.add_argument("--stats", action="store_true", help="add CPU%%, MEM, PROCS, RESTARTS and UPTIME columns")


def _logs(add, subparsers, parents):
    logs = add("logs", "show service logs, merged in time order", "logs", "show", parent="without_f")
    logs.add_argument("services", nargs="*", metavar="SERVICE",
                      help="services to show (default: all), or hook logs: web.pre_start, global.on_init")
    logs.add_argument("-f", "--follow", action="store_true", help="keep streaming new lines until Ctrl+C")
    logs.add_argument("--tail", type=_count, metavar="N", help="only the last N lines")
    logs.add_argument("--head", type=_count, metavar="N", help="only the first N lines")
    logs.add_argument("--no-hook", action="store_true", help="leave out the output of hooks")
    logs.add_argument("-t", "--timestamps", action="store_true", help="prefix each line with its UTC time")
    logs.add_argument("--since", type=_moment, metavar="TIME",
                      help="only lines from TIME on: a duration ago (10m, 2h) or an ISO-8601 time")
    logs.add_argument("--until", type=_moment, metavar="TIME", help="only lines up to TIME (same forms)")
    logs.add_argument("--grep", metavar="REGEX", help="only lines matching REGEX (Python syntax), "
                                                       "before --tail/--head count")


def _events(add, subparsers, parents):
    events = add("events", "stream the config's events live: state changes, restarts, health, hooks",
                 "events", "events")
    events.add_argument("-a", "--all", action="store_true", help="the events of every loaded config")


def _top(add, subparsers, parents):
    top = add("top", "full-screen live view of the services: CPU, memory, restarts; keys act on them", "top", "top")
    top.add_argument("-a", "--all", action="store_true", help="the services of every loaded config")


def _inspect(add, subparsers, parents):
    inspect = add("inspect", "show the baked config and runtime state as JSON", "views", "inspect")
    inspect.add_argument("services", nargs="*", metavar="SERVICE", help="services to show (default: all)")


def _prune(add, subparsers, parents):
    prune = add("prune", "remove the state of configs that are all stopped or whose file is gone", "views", "prune",
                parent="without_file")
    prune.add_argument("--force", action="store_true", help="stop running services first, then remove those too")
    prune.add_argument("--dry-run", action="store_true", help="only list what would be removed")


def _config(add, subparsers, parents):
    config = subparsers.add_parser("config", help="work with config files", parents=[parents["common"]])
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_commands.add_parser("check", help="validate the config without contacting the daemon",
                                       description="validate the config without contacting the daemon",
                                       parents=[parents["common"]])
    check.set_defaults(run=_runner("check", "check"))


def _export(add, subparsers, parents):
    export = add("export", "write the baked config as systemd units or a Nomad job", "export", "export")
    export.add_argument("--format", required=True, choices=("systemd", "nomad"), help="what to write: systemd or nomad")
    export.add_argument("--output", default="kepler-export", metavar="DIR",
                        help="directory to write the files to (default: ./kepler-export)")
    export.add_argument("--strict", action="store_true",
                        help="fail (exit 1, nothing written) when a setting has no equivalent")
    export.add_argument("--prefix", metavar="NAME", help="name of the units or job (default: the config's directory)")
    export.add_argument("--systemd-version", type=_version, metavar="N",
                        help="write only what systemd N understands (default: the local systemd, else 252)")
    export.add_argument("--driver", choices=("exec", "raw_exec"), default="exec",
                        help="Nomad task driver (default: exec)")


def _version(text):
    if not text.isdigit() or int(text) == 0:
        raise _argument_error(f"invalid version {text!r}: expected a positive integer")
    return int(text)


def _completion(add, subparsers, parents):
    completion = add("completion", "print a shell completion script: source <(keplerctl completion bash)",
                     "completion", "completion")
    completion.add_argument("shell", choices=("bash", "zsh"), help="the shell: bash or zsh")
    # The scripts ask for the current config's service names with this (not for users).
    completion.add_argument("--services", action="store_true", help=argparse.SUPPRESS)


COMMANDS = {
    "daemon": _daemon, "start": _start, "stop": _stop, "restart": _restart, "recreate": _recreate, "apply": _apply,
    "ps": _ps, "logs": _logs, "inspect": _inspect, "prune": _prune, "config": _config,
    "export": _export, "completion": _completion, "scale": _scale, "signal": _signal_command,
    "exec": _exec, "events": _events, "top": _top,
}
