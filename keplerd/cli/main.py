"""keplerctl: drive the Kepler daemon.

Exit codes: 0 success; 1 error (one line on stderr saying what and where);
2 the daemon is not reachable. Only what a command needs is imported, so that
``keplerctl ps`` starts in a few tens of milliseconds.
"""

import argparse
import os
import pwd
import sys

from keplerd import __version__, paths
from keplerd.cli.client import CommandError, DaemonUnreachable

EXIT_ERROR = 1
EXIT_UNREACHABLE = 2
EXIT_INTERRUPTED = 130


class Context:
    """What every command needs: parsed arguments and the config they point at."""

    def __init__(self, args):
        self.args = args
        self.cwd = os.getcwd()

    @property
    def config_path(self):
        # In logs, -f is --follow: `keplerctl logs -f kepler.yaml` does not name a file.
        hint = ("in logs, -f is --follow: use keplerctl -f FILE logs, or keplerctl logs --file FILE"
                if self.args.command == "logs" else "use -f FILE")
        try:
            return paths.find_config_file(self.cwd, self.args.file, hint)
        except FileNotFoundError as error:
            raise CommandError(str(error)) from None

    @property
    def display_name(self):
        return self.args.file or os.path.basename(self.config_path)

    @property
    def home(self):
        """The home of the user running keplerctl, for ``~`` in configs."""
        try:
            return pwd.getpwuid(os.getuid()).pw_dir
        except KeyError:
            return os.path.expanduser("~")

    def config_request(self, request_type, **fields):
        """Return a request about the current config."""
        return {"type": request_type, "config": self.config_path, **fields}

    def baking_request(self, request_type, **fields):
        """Return a request that may bake: it carries our environment, cwd and home."""
        return self.config_request(request_type, display_name=self.display_name, env=dict(os.environ),
                                   cwd=self.cwd, home=self.home, **fields)

    def client(self):
        from keplerd.cli.client import Client

        return Client()


class Formatter(argparse.HelpFormatter):
    """argparse's formatter, sized from the terminal without importing shutil (start-up time)."""

    def __init__(self, prog, **options):
        if options.get("width") is None:
            options["width"] = _terminal_width() - 2
        super().__init__(prog, **options)


def _terminal_width():
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        return int(columns)
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError):
        return 80


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and exit code 1 (SPEC §13)."""

    def __init__(self, *args, **options):
        options.setdefault("formatter_class", Formatter)
        super().__init__(*args, **options)

    def error(self, message):
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_ERROR)


def _global_options(parser, suppress, file_flags=("-f", "--file")):
    default = argparse.SUPPRESS if suppress else None
    if file_flags:
        parser.add_argument(*file_flags, default=default, help="config file (default: kepler.yaml or kepler.yml)")
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="say more")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="print data as JSON")


def build_parser(only=None):
    """Return keplerctl's argument parser: every command, or only the one named *only*."""
    from keplerd.cli import commands

    parser = Parser(prog="keplerctl", description="Drive the Kepler process orchestrator.")
    parser.add_argument("--version", action="version", version=f"keplerctl {__version__}")
    _global_options(parser, suppress=False)
    parents = {}
    for kind, file_flags in (("common", ("-f", "--file")), ("without_f", ("--file",)), ("without_file", ())):
        parents[kind] = Parser(add_help=False)
        _global_options(parents[kind], suppress=True, file_flags=file_flags)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.register(subparsers, parents, only=only)
    return parser


def command_named(argv):
    """Return the command *argv* asks for, or None when it is unclear (then build them all).

    Global options come before the command; ``-f``/``--file`` takes a value. Help
    or a version request before the command also needs the whole parser.
    """
    from keplerd.cli.commands import COMMANDS

    arguments = iter(argv)
    for argument in arguments:
        if argument in ("-f", "--file"):
            next(arguments, None)
        elif argument in ("-h", "--help", "--version"):
            return None
        elif not argument.startswith("-"):
            return argument if argument in COMMANDS else None
    return None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(only=command_named(argv)).parse_args(argv)
    context = Context(args)
    try:
        code = args.run(context)
    except DaemonUnreachable as error:
        _complain(error)
        return _exit(EXIT_UNREACHABLE)
    except CommandError as error:
        _complain(error)
        return _exit(EXIT_ERROR)
    except KeyboardInterrupt:
        return _exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        # stdout went away (e.g. `keplerctl logs | head`): not an error worth a message.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return _exit(0)
    return _exit(code or 0)


def _complain(error):
    """Print *error* on stderr, each of its lines (a rejected bake lists every problem) prefixed."""
    print("".join(f"keplerctl: {line}\n" for line in str(error).splitlines() or [""]), end="", file=sys.stderr)


def _exit(code):
    sys.stdout.flush()
    sys.exit(code)
