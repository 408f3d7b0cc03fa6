"""The robustness set (issue #24): hostile input and faults, against a real keplerd.

Reuses the integration fixtures; the property-based tests are bounded in examples
and time (``settings`` in each module) so that ``make test`` stays in budget.
"""

import os

import psutil
import pytest

from tests.integration.conftest import accounts, kepler_root  # noqa: F401
from tests.integration.harness import Kepler

if os.geteuid() != 0:
    pytest.exit("the robustness tests start a real keplerd and must run as root", returncode=1)


@pytest.fixture
def kepler(kepler_root):  # noqa: F811
    """A running keplerd; afterwards, even when a test failed, no process marked with its state dir survives."""
    instance = Kepler(kepler_root)
    try:
        instance.start_daemon()
        yield instance
    finally:
        instance.cleanup()
        kill_marked(instance.state_dir)


@pytest.fixture
def kepler_stopped(kepler_root):  # noqa: F811
    instance = Kepler(kepler_root)
    try:
        yield instance
    finally:
        instance.cleanup()
        kill_marked(instance.state_dir)


def kill_marked(state_dir):
    """Kill what escaped a service of *state_dir* (its processes carry KEPLER_STATE_DIR)."""
    for process in psutil.process_iter():
        try:
            if process.environ().get("KEPLER_STATE_DIR") == state_dir:
                process.kill()
        except psutil.Error:
            continue
