import os
import shutil
import signal
import tempfile

import pytest

from tests.integration.accounts import Accounts
from tests.integration.harness import Kepler

INTEGRATION = os.path.dirname(os.path.abspath(__file__))

# Tests press Ctrl+C (SIGINT) on keplerctl and keplerd. A run started as a background job of a
# non-interactive shell inherits SIGINT ignored, and so would every child: give it a handler, which
# exec resets to the default in the children.
signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config, items):
    """Skip (not abort the run: the unit tests still run) every integration test when not root."""
    if os.geteuid() == 0:
        return
    needs_root = pytest.mark.skip(reason="the integration tests start a real keplerd and must run as root")
    for item in items:
        if str(item.path).startswith(INTEGRATION + os.sep):
            item.add_marker(needs_root)


@pytest.fixture
def kepler_root():
    # A short path: Unix socket paths are limited to 107 bytes.
    root = tempfile.mkdtemp(prefix="kt-", dir="/tmp")
    os.chmod(root, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def kepler(kepler_root):
    """A running keplerd in a temporary state dir; stopped and cleaned up afterwards."""
    instance = Kepler(kepler_root)
    try:
        instance.start_daemon()
        yield instance
    finally:
        instance.cleanup()


@pytest.fixture
def kepler_stopped(kepler_root):
    """A keplerd harness whose daemon the test starts itself."""
    instance = Kepler(kepler_root)
    try:
        yield instance
    finally:
        instance.cleanup()


@pytest.fixture
def accounts():
    """Throwaway users and groups, deleted after the test (see accounts.py)."""
    made = Accounts()
    try:
        yield made
    finally:
        made.cleanup()
