"""keplerctl config check: validate and bake a config in memory, without the daemon."""

import os
import sys

from keplerd.cli.client import CommandError


def check(context):
    """Validate the config (schema, expansion, dependencies, Lua); print every error."""
    from keplerd.config.bake import check as check_config
    from keplerd.config.errors import ConfigError

    path = context.config_path
    try:
        check_config(path, dict(os.environ), context.home, display_name=context.display_name)
    except ConfigError as error:
        for line in error.errors[:-1]:
            print(f"keplerctl: {line}", file=sys.stderr)
        raise CommandError(error.errors[-1]) from None
    print(f"{context.display_name}: ok")
    return 0
