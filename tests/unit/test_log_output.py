"""How keplerctl prints log lines: colours per service, NO_COLOR / KEPLER_COLOR, chunks, imports."""

import io
import subprocess
import sys

from keplerd.cli.output import LogPrinter, iso_time, parse_chunk, use_colour


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_colour_on_a_terminal_only():
    assert use_colour(Terminal(), {}) is True
    assert use_colour(io.StringIO(), {}) is False


def test_no_color_disables_and_kepler_color_forces():
    assert use_colour(Terminal(), {"NO_COLOR": "1"}) is False
    assert use_colour(Terminal(), {"NO_COLOR": ""}) is True, "an empty NO_COLOR does not count"
    assert use_colour(io.StringIO(), {"KEPLER_COLOR": "1"}) is True
    assert use_colour(io.StringIO(), {"KEPLER_COLOR": "1", "NO_COLOR": "1"}) is True
    assert use_colour(Terminal(), {"KEPLER_COLOR": "0"}) is False


def test_each_service_gets_its_own_colour_and_hooks_share_it():
    out = io.StringIO()
    printer = LogPrinter(out, colour=True)
    printer.know(["web", "db", "worker"])
    printer.line(0, "web", "a")
    printer.line(0, "db", "b")
    printer.line(0, "web.pre_start", "c")
    colours = [line.split("m", 1)[0] for line in out.getvalue().splitlines()]
    assert colours[0] != colours[1]
    assert colours[0] == colours[2]


def test_names_are_padded_to_the_widest_known_name():
    out = io.StringIO()
    printer = LogPrinter(out, colour=False)
    printer.know(["web", "worker"])
    printer.lines([[0, "web", "stdout", "hello"], [0, "worker", "stderr", "bye"]])
    assert out.getvalue() == "web    | hello\nworker | bye\n"


def test_timestamps_are_iso_utc_with_milliseconds():
    out = io.StringIO()
    LogPrinter(out, timestamps=True, colour=False).line(1700000000123, "web", "x")
    assert out.getvalue() == "2023-11-14T22:13:20.123Z web | x\n"
    assert iso_time(5) == "1970-01-01T00:00:00.005Z"


def test_live_chunks_are_split_on_newlines_only():
    assert parse_chunk("1 a\r b\n2 c\x0bd\n") == [(1, "a\r b"), (2, "c\x0bd")]


def test_keplerctl_logs_does_not_import_the_daemons_libraries():
    code = ("import sys; from keplerd.cli import main, logs, client, output; "
            "print(sorted(m for m in ('gevent', 'lupa', 'marshmallow', 'yaml') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
