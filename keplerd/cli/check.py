"""keplerctl config check: validate and bake a config in memory, without the daemon."""

import os
import sys

from keplerd.cli.client import CommandError


def check(context):
    """Validate the config (schema, expansion, dependencies, Lua, and for non-root who it may run as)."""
    from keplerd.config import runas
    from keplerd.config.bake import check as check_config
    from keplerd.config.errors import ConfigError

    path = context.config_path
    try:
        check_config(path, dict(os.environ), context.home, display_name=context.display_name,
                     caller=runas.this_process(_allow_run_as()))
    except ConfigError as error:
        for line in error.errors[:-1]:
            print(f"keplerctl: {line}", file=sys.stderr)
        raise CommandError(error.errors[-1]) from None
    print(f"{context.display_name}: ok")
    return 0


def _allow_run_as():
    """Return ``allow_run_as`` of the default keplerd.conf, or nothing when it cannot be read."""
    from keplerd import settings
    from keplerd.config.errors import ConfigError

    try:
        return settings.load(settings.DEFAULT_PATH, required=False).allow_run_as
    except ConfigError:
        return {}  # unreadable or invalid: the daemon's bake has the last word
