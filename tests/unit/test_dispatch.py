"""dispatch: a client's mistake is answered plainly, a bug is logged as an internal error."""

import logging
import types

import pytest

from keplerd.control import handlers
from keplerd.model.errors import UnknownName


ROOT_SESSION = types.SimpleNamespace(peer=types.SimpleNamespace(uid=0, user="root", pid=1))
DAEMON = types.SimpleNamespace(settings=None, registry=None)


@pytest.fixture
def handler(monkeypatch):
    """Install a request type ``probe`` whose handler raises what the test sets."""
    raised = {}

    def handle_probe(call, request):
        raise raised["error"]

    monkeypatch.setitem(handlers.HANDLERS, "probe", handle_probe)
    return raised


def test_an_unknown_name_is_the_clients_mistake(handler, caplog):
    handler["error"] = UnknownName("no such service: nope")
    with caplog.at_level(logging.ERROR):
        response = handlers.dispatch(DAEMON, ROOT_SESSION, 1, {"type": "probe"})
    assert response == {"ok": False, "error": "no such service: nope"}
    assert caplog.records == []


def test_a_key_error_from_a_bug_is_logged_as_an_internal_error(handler, caplog):
    handler["error"] = KeyError("restart_reason")
    with caplog.at_level(logging.ERROR):
        response = handlers.dispatch(DAEMON, ROOT_SESSION, 1, {"type": "probe"})
    assert response == {"ok": False, "error": "internal error: 'restart_reason'"}
    assert "request probe failed" in caplog.text and "KeyError" in caplog.text
