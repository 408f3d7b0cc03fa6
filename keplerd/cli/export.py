"""keplerctl export: the baked config as systemd units or a Nomad job (SPEC §22).

The daemon hands over the snapshot (baking the config first if it has none, starting
nothing); the mapping runs here, in the caller's process, and the files are written
with the caller's rights. The mapping itself is pure: :mod:`keplerd.export`.
"""

import json
import os
import re
import shutil
import subprocess
import sys

from keplerd.cli.client import CommandError

_PREFIX = re.compile(r"^[A-Za-z0-9_.-]+$")
_VERSION = re.compile(r"^systemd (\d+)")


def export(context):
    """Write the export of the config to ``--output``; warnings on stderr, errors with --strict."""
    from keplerd.export import ExportError, Options
    from keplerd.export import export as run_export
    from keplerd.export.report import DEFAULT_SYSTEMD_VERSION, safe_prefix

    args = context.args
    if args.prefix is not None and not _PREFIX.match(args.prefix):
        raise CommandError(f"invalid --prefix {args.prefix!r}: use letters, digits, '_', '.' and '-'")
    with context.client() as client:
        snapshot = client.call(context.baking_request("export"))["snapshot"]
    prefix = args.prefix or safe_prefix(os.path.basename(snapshot["config_dir"]))
    version = args.systemd_version or local_systemd_version() or DEFAULT_SYSTEMD_VERSION
    try:
        options = Options(prefix=prefix, systemd_version=version, driver=args.driver, resolve=_which)
        result = run_export(snapshot, args.format, options)
    except ExportError as error:
        raise CommandError(str(error)) from None
    lines = result.warning_lines()
    if args.strict and lines:
        for line in lines:
            print(f"keplerctl: error: {line}", file=sys.stderr)
        raise CommandError(f"{len(lines)} setting(s) have no {args.format} equivalent (--strict): nothing written")
    written = _write(args.output, result.files, prefix)
    _report(args, written, lines)
    return 0


def _write(directory, files, prefix):
    """Write *files* into *directory* (created if needed); return their paths, sorted.

    Units an earlier export of the same prefix wrote there and this one does not
    (a service since removed) are deleted, so the directory is the export.
    """
    try:
        os.makedirs(directory, exist_ok=True)
        for name in _stale_units(directory, files, prefix):
            os.unlink(os.path.join(directory, name))
        written = []
        for name in sorted(files):
            path = os.path.join(directory, name)
            with open(path, "w", encoding="utf-8") as stream:
                stream.write(files[name])
            written.append(path)
    except OSError as error:
        raise CommandError(f"cannot write to {directory}: {error.strerror}") from None
    return written


def _stale_units(directory, files, prefix):
    """Return the names of units in *directory* that an export of *prefix* wrote and *files* lacks."""
    from keplerd.export.systemd import GENERATED_MARK

    stale = []
    for name in sorted(os.listdir(directory)):
        if name in files or not name.startswith(f"{prefix}-") or not name.endswith(".service"):
            continue
        with open(os.path.join(directory, name), encoding="utf-8", errors="replace") as stream:
            if stream.readline().startswith(GENERATED_MARK):
                stale.append(name)
    return stale


def _report(args, written, warnings):
    if args.json:
        print(json.dumps({"files": written, "warnings": warnings}, indent=2))
        return
    for line in warnings:
        print(f"keplerctl: warning: {line}", file=sys.stderr)
    for path in written:
        print(path)


def _which(program, search_path):
    """Find *program* in *search_path* on this machine, as Kepler would at spawn (SPEC §2)."""
    return shutil.which(program, path=search_path)


def local_systemd_version():
    """Return the version of this machine's systemd (``systemctl --version``), or None."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return None
    try:
        output = subprocess.run([systemctl, "--version"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.match(output)
    return int(match.group(1)) if match else None
