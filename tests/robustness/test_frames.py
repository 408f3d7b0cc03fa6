"""Point 8 of #24: every hostile request gets a located error answer; no traceback, no silence.

Deep nesting, NUL bytes, NaN and wrong types are refused at the boundary
(``control/requests.py`` and ``protocol.decode``); the session goes on after each.
"""

import json

import pytest

from tests.robustness import wire

HOSTILE = [
    (b"[" * 100_000, "invalid JSON frame: nested too deeply"),
    (b'{"id": 2, "request": {"type": "logs_read", "cursor": "x", "wait": NaN}}',
     "invalid JSON frame: NaN is not a JSON number"),
    (b'{"id": 2, "request": {"type": "ps", "config": "/tmp/a\\u0000b"}}', "field 'config' holds a NUL byte"),
    (b'{"id": 2, "request": {"type": "start", "config": "/tmp/x.yaml", "env": {"A": 1}}}',
     "field 'env' must be an object of strings"),
    (b'{"id": 2, "request": {"type": "stop", "config": ["/tmp/x.yaml"]}}', "field 'config' must be a string"),
    (b'{"id": 2, "request": {"type": "logs", "config": "/x", "tail": -1}}',
     "field 'tail' must be an integer from 0 to 1000000000000"),
    (b'{"id": 2, "request": {"type": "ps", "all": "yes"}}', "field 'all' must be true or false"),
    (b'{"id": 2, "request": {"type": "ps", "x": ' + b"[" * 40 + b"]" * 40 + b"}}",
     "field 'x': nested deeper than 16 levels"),
    (b'{"id": 2, "request": {"type": "stop", "config": "/x", "signal": 1e308}}',
     "field 'signal' must be a signal name or number"),
]


@pytest.mark.parametrize("body, error", HOSTILE, ids=[error for _, error in HOSTILE])
def test_a_hostile_request_gets_an_error_answer_and_the_session_goes_on(kepler, body, error):
    sock = wire.hello(wire.connect(kepler))
    answer = wire.ask(sock, 2, body)
    assert answer["response"] == {"ok": False, "error": error}
    assert wire.ask(sock, 3, {"type": "ping"})["response"] == {"ok": True, "pong": True}
    assert "Traceback" not in kepler.read_daemon_log()
    assert "internal error" not in json.dumps(answer)
