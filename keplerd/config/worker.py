"""Bake one config, or read keplerd.conf, in a process of its own (``keplerd.bakery`` runs it).

Reads a JSON request on stdin and writes the answer on stdout:

* a bake — ``{"config", "env", "home", "display_name", "options", "caller"}`` — is answered
  ``{"ok": true, "snapshot", "config", "env_files"}`` (file contents base64-encoded);
* settings — ``{"settings": <keplerd.conf, base64-encoded>, "display_name"}`` — are answered
  ``{"ok": true, "values": {...}}``;
* either fails as ``{"ok": false, "errors": [...]}``.

Nothing here is gevent: the bake, Lua included, simply runs. The bake of a
non-root ``caller``'s config reads files and runs Lua with the caller's effective
ids (SPEC §21): the daemon never reads a file for someone who could not.
"""

import base64
import ctypes
import json
import os
import sys

from keplerd.config.bake import bake
from keplerd.config.errors import ConfigError

PR_SET_DUMPABLE = 4


def answer(request):
    """Return the answer to one *request*: a bake, or settings to validate."""
    if "settings" in request:
        return settings_answer(request)
    try:
        baked = bake(request["config"], request["env"], request["home"], request.get("display_name"),
                     caller=request.get("caller"), check_host=True, **request.get("options", {}))
    except ConfigError as error:
        return {"ok": False, "errors": error.errors}
    except OSError as error:
        return {"ok": False, "errors": [f"{request['config']}: cannot read: {error.strerror}"]}
    return {
        "ok": True,
        "snapshot": baked.snapshot,
        "config": _text(baked.config_bytes),
        "env_files": {name: _text(data) for name, data in baked.env_files.items()},
    }


def settings_answer(request):
    """Return the validated values of the keplerd.conf text of *request*."""
    from keplerd.config.settings_schema import parse_settings

    try:
        values = parse_settings(base64.b64decode(request["settings"]), request["display_name"])
    except ConfigError as error:
        return {"ok": False, "errors": error.errors}
    return {"ok": True, "values": values}


def _text(data):
    return base64.b64encode(data).decode("ascii")


def act_as(caller):
    """Take the effective ids of a non-root *caller* for the rest of this process.

    Only the effective ids change: the real and saved uid stay root's, so the
    caller can neither signal nor trace the worker (the kernel also makes it
    non-dumpable), and what it answers is still the worker's own work. Lupa is
    imported first: the interpreter's own files need not be readable by the caller.
    """
    import encodings.utf_8_sig  # noqa: F401 (the loader's codec, looked up lazily: load it while still root)

    from lupa import lua54  # noqa: F401 (imported while still root)

    os.setgroups(caller["groups"])
    os.setegid(caller["gid"])
    os.seteuid(caller["uid"])
    # The kernel does this on an id change unless fs.suid_dumpable says otherwise: make sure.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def main():
    request = json.load(sys.stdin.buffer)
    if request.get("caller"):
        act_as(request["caller"])
    sys.stdout.buffer.write(json.dumps(answer(request)).encode())


if __name__ == "__main__":
    main()
