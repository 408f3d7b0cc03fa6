"""The robustness set (issue #24): hostile input and faults, against a real keplerd.

Reuses the integration fixtures; the property-based tests are bounded in examples
and time (``settings`` in each module) so that ``make test`` stays in budget.
"""

import os

import pytest

from tests.integration.conftest import accounts, kepler, kepler_root, kepler_stopped  # noqa: F401

if os.geteuid() != 0:
    pytest.exit("the robustness tests start a real keplerd and must run as root", returncode=1)
