"""Bake one config, or read keplerd.conf, in a process of its own (``keplerd.bakery`` runs it).

Reads a JSON request on stdin and writes the answer on stdout:

* a bake — ``{"config", "env", "home", "display_name", "options"}`` — is answered
  ``{"ok": true, "snapshot", "config", "env_files"}`` (file contents base64-encoded);
* settings — ``{"settings": <keplerd.conf, base64-encoded>, "display_name"}`` — are answered
  ``{"ok": true, "values": {...}}``;
* either fails as ``{"ok": false, "errors": [...]}``.

Nothing here is gevent: the bake, Lua included, simply runs.
"""

import base64
import json
import sys

from keplerd.config.bake import bake
from keplerd.config.errors import ConfigError


def answer(request):
    """Return the answer to one *request*: a bake, or settings to validate."""
    if "settings" in request:
        return settings_answer(request)
    try:
        baked = bake(request["config"], request["env"], request["home"], request.get("display_name"),
                     **request.get("options", {}))
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


def main():
    request = json.load(sys.stdin.buffer)
    sys.stdout.buffer.write(json.dumps(answer(request)).encode())


if __name__ == "__main__":
    main()
