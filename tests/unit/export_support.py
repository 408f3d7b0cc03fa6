"""Helpers of the export tests: bake a config text, read units, and ask systemd itself.

``systemd-analyze`` and ``systemd`` come from Debian's ``systemd`` package (`make
test-tools` installs it); neither needs a running systemd: ``verify`` checks unit
files, and ``systemd --test`` (which refuses to run as root, so it runs as nobody)
loads them with systemd's own parser and dumps what it understood.
"""

import os
import shutil
import stat
import subprocess
import textwrap


from keplerd.config.bake import bake

SYSTEMD_BINARIES = ("/usr/lib/systemd/systemd", "/lib/systemd/systemd")
NOBODY = "65534"


def bake_text(directory, text, sys_env=None, files=None):
    """Write *text* as kepler.yaml (and *files*) in *directory*; return its snapshot."""
    for name, content in (files or {}).items():
        with open(os.path.join(directory, name), "w") as stream:
            stream.write(content)
    path = os.path.join(directory, "kepler.yaml")
    with open(path, "w") as stream:
        stream.write(textwrap.dedent(text))
    return bake(path, sys_env or {"HOME": "/root"}, "/root").snapshot


def parse_unit(text):
    """Return ``{section: [(key, value), ...]}`` of a unit file's text (comments left out)."""
    sections, current = {}, None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
        else:
            key, _, value = line.partition("=")
            current.append((key, value))
    return sections


def values(unit_text, section, key):
    """Return every value of *key* in *section* of the unit."""
    return [value for name, value in parse_unit(unit_text).get(section, []) if name == key]


class StubPrograms:
    """A resolver for Options.resolve that finds programs, or makes an executable stub for a missing one."""

    def __init__(self, directory):
        self.directory = directory

    def __call__(self, program, search_path):
        found = shutil.which(program, path=search_path)
        if found:
            return found
        stub = os.path.join(self.directory, program)
        with open(stub, "w") as stream:
            stream.write("#!/bin/sh\nexit 0\n")
        os.chmod(stub, 0o755)
        return stub


def require(tool):
    path = shutil.which(tool)
    assert path, f"{tool} is missing: `make test-tools` installs it (Debian package systemd)"
    return path


def write_units(directory, files):
    for name, text in files.items():
        path = os.path.join(directory, name)
        with open(path, "w") as stream:
            stream.write(text)
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)


def systemd_analyze_verify(directory, names):
    """Run ``systemd-analyze verify`` on the units *names* in *directory*; return the CompletedProcess."""
    analyze = require("systemd-analyze")
    return subprocess.run([analyze, "verify", "--man=no", *names], cwd=directory, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})


def systemd_dump(directory, unit):
    """Return the lines systemd's own parser gives for *unit* (``systemd --test`` as nobody)."""
    binary = next((path for path in SYSTEMD_BINARIES if os.path.exists(path)), None)
    assert binary, "systemd is missing: `make test-tools` installs it (Debian package systemd)"
    setpriv = require("setpriv")
    result = subprocess.run(
        [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", binary, "--test", "--system",
         f"--unit={unit}", "--no-pager"],
        capture_output=True, text=True, timeout=120,
        env={"SYSTEMD_UNIT_PATH": f"{directory}:", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    return _unit_block(result.stdout, unit)


def _unit_block(dump, unit):
    lines, inside = [], False
    for line in dump.splitlines():
        if line.startswith("\t-> Unit "):
            inside = line == f"\t-> Unit {unit}:"
        elif inside:
            lines.append(line.strip())
    assert lines, f"{unit} is not in systemd's dump"
    return lines


def dumped_environment(lines):
    """Return the ``Environment:`` entries of a dumped unit as a dict."""
    env = {}
    for line in lines:
        if line.startswith("Environment: "):
            key, _, value = line[len("Environment: "):].partition("=")
            env[key] = value
    return env


def dumped_command(lines, directive="ExecStart"):
    """Return the argv systemd will exec for *directive*: its dumped command line, unquoted, ``$$`` as ``$``."""
    for index, line in enumerate(lines):
        if line == f"-> {directive}:":
            command = lines[index + 1]
            assert command.startswith("Command Line: "), command
            return [word.replace("$$", "$") for word in split_command_line(command[len("Command Line: "):])]
    raise AssertionError(f"no {directive} in the dump")


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


def split_command_line(text):
    """Split a command line as systemd dumps it: words, double-quoted with backslash, C and octal escapes."""
    words, index = [], 0
    while index < len(text):
        if text[index] == " ":
            index += 1
        elif text[index] == '"':
            word, index = _quoted_word(text, index + 1)
            words.append(word)
        else:
            end = text.find(" ", index)
            end = len(text) if end < 0 else end
            words.append(text[index:end])
            index = end
    return words


def _quoted_word(text, index):
    chars = []
    while text[index] != '"':
        if text[index] == "\\":
            following = text[index + 1]
            if following == "x":
                chars.append(chr(int(text[index + 2:index + 4], 16)))
                index += 4
                continue
            if following.isdigit():  # octal, as systemd dumps control characters
                chars.append(chr(int(text[index + 1:index + 4], 8)))
                index += 4
                continue
            chars.append(_ESCAPES.get(following, following))
            index += 2
        else:
            chars.append(text[index])
            index += 1
    return "".join(chars), index + 1


# -- Nomad's own checks of a job (nomad/structs: RestartPolicy.Validate, Resources.MeetsMinResources,
# ServiceCheck.validateCommon and validateConsul, Task.Validate's log storage), restated for the keys we emit.

SECOND = 1_000_000_000
RESTART_MODES = ("delay", "fail")
LIFECYCLE_HOOKS = ("prestart", "poststart", "poststop")
DEFAULT_DISK_MB = 300


def nomad_validation_errors(job):
    """Return what Nomad's job validation would reject in *job* (the keys this exporter writes)."""
    errors = []
    for group in job["TaskGroups"]:
        disk = group.get("EphemeralDisk", {}).get("SizeMB", DEFAULT_DISK_MB)
        if not isinstance(group["Count"], int) or group["Count"] < 0:
            errors.append(f"{group['Name']}: Count")
        for task in group["Tasks"]:
            errors.extend(f"{group['Name']}/{task['Name']}: {error}" for error in _task_errors(task, disk))
    return errors


def _task_errors(task, disk):
    errors = []
    policy = task["RestartPolicy"]
    if policy["Mode"] not in RESTART_MODES:
        errors.append(f"restart mode {policy['Mode']!r}")
    if policy["Attempts"] == 0 and policy["Mode"] != "fail":
        errors.append("restart policy with 0 attempts is ambiguous")
    if policy["Interval"] < 5 * SECOND:
        errors.append("restart interval under 5s")
    if policy["Attempts"] * policy["Delay"] > policy["Interval"]:
        errors.append("cannot restart Attempts times in Interval with Delay")
    resources = task.get("Resources", {"CPU": 100, "MemoryMB": 300})  # Nomad's defaults when absent
    if resources["CPU"] < 1 or resources["MemoryMB"] < 10:
        errors.append("resources under the minimum")
    log = task.get("LogConfig")
    if log and (log["MaxFiles"] < 1 or log["MaxFileSizeMB"] < 1 or log["MaxFiles"] * log["MaxFileSizeMB"] >= disk):
        errors.append("log storage")
    if "Lifecycle" in task and task["Lifecycle"]["Hook"] not in LIFECYCLE_HOOKS:
        errors.append("lifecycle hook")
    if not isinstance(task["Config"].get("command"), str) or not task["Config"]["command"]:
        errors.append("command")
    for service in task.get("Services", []):
        errors.extend(_check_errors(check) for check in service["Checks"] if _check_errors(check))
    return errors


def _check_errors(check):
    if check["Interval"] < SECOND or check["Timeout"] < SECOND:
        return "check interval or timeout under 1s"
    if check["Type"] == "script" and (not check.get("Command") or check.get("FailuresBeforeCritical")):
        return "script check"
    if check["Type"] == "http" and (not check.get("Path") or "://" in check["Path"]):
        return "http check path"
    if check["Type"] not in ("script", "http", "tcp"):
        return "check type"
    return None
