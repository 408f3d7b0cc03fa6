"""Point 7 of #24: a log file deleted or renamed from outside is noticed and reopened."""

import os

import pytest

from tests.integration.harness import wait_for

CHATTY = """
    services:
      chatty:
        command: ["bash", "-c", "i=0; while :; do echo line-$i; i=$((i+1)); sleep 0.05; done"]
"""


def _log_file(kepler):
    return os.path.join(kepler.inspect_path(), "logs", "chatty.stdout.log")


def _lines(path):
    try:
        with open(path) as file:
            return file.read().splitlines()
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("how", ["deleted", "renamed"])
def test_a_log_file_removed_from_outside_is_written_again(kepler, how):
    kepler.config(CHATTY)
    kepler.ctl("start", "-d")
    path = _log_file(kepler)
    wait_for(lambda: len(_lines(path)) > 2, message="the first lines")
    if how == "deleted":
        os.unlink(path)
    else:
        os.rename(path, path + ".moved")
    wait_for(lambda: len(_lines(path)) > 2, message="lines in a new file at the same path")
    assert any("line-" in line for line in kepler.logs("--tail", "5"))
    kepler.ctl("restart", "-d")
    size = len(_lines(path))
    wait_for(lambda: len(_lines(path)) > size, message="lines after a restart")
