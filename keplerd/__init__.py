"""Kepler: a process orchestrator for Linux (daemon ``keplerd``, CLI ``keplerctl``).

This package's ``__init__`` stays import-free so that ``keplerctl`` starts fast.
"""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
