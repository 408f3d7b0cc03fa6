"""keplerctl ps and inspect: what is running, and how it was configured."""

import json
import sys

from keplerd.cli.output import STATS_HEADERS, pid_text, ps_json_row, stats_cells, status_text, table


def ps(context):
    """List services and their status."""
    args = context.args
    request = {"type": "ps", "all": True} if args.all else context.config_request("ps")
    request["stats"] = args.json or args.stats
    with context.client() as client:
        rows = client.call(request)["services"]
    warn_changed_configs(rows, "config_path" if args.all else "config")
    if args.json:
        print(json.dumps([ps_json_row(row) for row in rows], indent=2))
        return 0
    if not rows:
        print("no services")
        return 0
    headers = ["NAME", "STATUS", "PID"]
    lines = [[row["name"], status_text(row), pid_text(row)] for row in rows]
    if args.stats:
        headers += STATS_HEADERS
        for line, row in zip(lines, rows):
            line.extend(stats_cells(row))
    if args.all:
        headers.insert(0, "CONFIG")
        for line, row in zip(lines, rows):
            line.insert(0, row.get("config_path") or row.get("config"))
    print(table(headers, lines))
    return 0


def warn_changed_configs(rows, key="config"):
    """Say on stderr which configs changed since they were baked (SPEC §13), named by *key* of a row."""
    changed = dict.fromkeys(row.get(key) or row["config"] for row in rows if row.get("config_changed"))
    for config in changed:
        print(f"{config} changed since it was baked: keplerctl apply", file=sys.stderr)


def inspect(context):
    """Show the baked config and runtime state of services as JSON."""
    with context.client() as client:
        response = client.call(context.config_request("inspect", services=context.args.services))
    print(json.dumps(response["inspect"], indent=2))
    return 0


def prune(context):
    """Remove the state dirs of configs whose services all ended or whose file is gone."""
    args = context.args
    with context.client() as client:
        response = client.call({"type": "prune", "force": args.force, "dry_run": args.dry_run})
    if args.json:
        print(json.dumps(response["pruned"], indent=2))
        return 0
    verb = "would remove" if args.dry_run else "removed"
    for item in response["pruned"]:
        print(f"{verb} {item['config']} ({item['id']}): {item['why']}")
    if not response["pruned"]:
        print("nothing to prune")
    return 0
