"""Property: whatever frames a client sends, the daemon answers or hangs up cleanly, and lives on.

Requests of every type carry fields of random JSON types and values (and random
raw bodies); each gets an answer that is not an internal error, the session goes
on (ping), and the daemon's log holds no traceback. One daemon for all examples.
"""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keplerd.control.handlers import HANDLERS
from keplerd.control.requests import FIELDS
from tests.robustness import wire

TYPES = sorted(set(HANDLERS) - {"daemon_stop"}) + ["hello", "nope", ""]
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=30), st.sampled_from(["/", "/nonexistent/kepler.yaml", "\0", "x\0y", "SIGKILL", "9"])),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8)
REQUEST = st.fixed_dictionaries({"type": st.sampled_from(TYPES)},
                                optional={key: JSON for key in sorted(FIELDS) if key != "type"})
FRAMES = []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(REQUEST.map(lambda request: json.dumps({"id": 7, "request": request}).encode()),
                          st.binary(max_size=64)), min_size=1, max_size=3))
def test_random_requests_get_clean_answers(kepler, bodies):
    sock = wire.hello(wire.connect(kepler))
    try:
        for body in bodies:
            FRAMES.append(1)
            answer = wire.ask(sock, 7, body)
            if answer is None:
                return  # hung up on a broken frame: allowed, the daemon must still serve others
            response = answer.get("response") or {}
            assert "internal error" not in str(response.get("error")), (body, answer)
        assert wire.ask(sock, 8, {"type": "ping"})["response"]["ok"]
    finally:
        sock.close()
    assert "Traceback" not in kepler.read_daemon_log()


def test_deep_nesting_and_non_finite_numbers_leave_no_traceback(kepler):
    sock = wire.hello(wire.connect(kepler))
    for depth in (10, 1000, 100_000):
        wire.ask(sock, 1, b"[" * depth)
    for value in ("NaN", "Infinity", "-Infinity", "1e999"):
        wire.ask(sock, 2, f'{{"id": 2, "request": {{"type": "logs_read", "cursor": "x", "wait": {value}}}}}'.encode())
    assert wire.ask(sock, 3, {"type": "ping"})["response"]["ok"]
    assert "Traceback" not in kepler.read_daemon_log()
