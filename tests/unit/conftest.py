"""Fixtures shared by unit tests."""

import os
import shutil
import tempfile

import pytest


@pytest.fixture
def world_readable_dir():
    """A temporary dir that user nobody can read (systemd --test runs as nobody); removed afterwards."""
    path = tempfile.mkdtemp(prefix="kexport-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
