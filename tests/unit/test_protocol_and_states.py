import socket
import struct

import pytest

from keplerd.control.protocol import MAX_FRAME, BadFrame, ProtocolError, encode, encode_parts, raw_array, read_frame
from keplerd.model import states


def _pair_with(data):
    left, right = socket.socketpair()
    left.sendall(data)
    left.close()
    return right


def test_frames_round_trip():
    sock = _pair_with(encode({"id": 1, "request": {"type": "ping"}}) + encode({"id": 2, "x": "é"}))
    assert read_frame(sock) == {"id": 1, "request": {"type": "ping"}}
    assert read_frame(sock) == {"id": 2, "x": "é"}
    assert read_frame(sock) is None


@pytest.mark.parametrize("rows", [[], [{"name": "a", "pid": 1}], [{"name": "é", "pid": None}, {"name": "b"}],
                                  [{"name": f"s{index}", "pid": index} for index in range(70)]])
def test_an_array_encoded_item_by_item_reads_back_as_the_list(rows):
    message = {"id": 3, "response": {"ok": True, "services": raw_array(iter(rows))}}
    sock = _pair_with(b"".join(encode_parts(message)))
    assert read_frame(sock) == {"id": 3, "response": {"ok": True, "services": rows}}


def test_an_oversized_length_is_a_protocol_error():
    sock = _pair_with(struct.pack(">I", MAX_FRAME + 1))
    with pytest.raises(ProtocolError, match="exceeds"):
        read_frame(sock)


def test_a_truncated_frame_is_a_protocol_error():
    sock = _pair_with(struct.pack(">I", 10) + b"{}")
    with pytest.raises(ProtocolError, match="middle of a frame"):
        read_frame(sock)


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe"])
def test_bad_bodies_are_bad_frames_and_leave_the_stream_readable(body):
    sock = _pair_with(struct.pack(">I", len(body)) + body + encode({"id": 3}))
    with pytest.raises(BadFrame):
        read_frame(sock)
    assert read_frame(sock) == {"id": 3}


def test_transitions_follow_the_state_machine():
    states.check_transition(states.STOPPED, states.STARTING)
    states.check_transition(states.RUNNING, states.STOPPING)
    states.check_transition(states.STOPPING, states.STOPPED)
    with pytest.raises(states.TransitionError):
        states.check_transition(states.STOPPED, states.RUNNING)
    with pytest.raises(states.TransitionError):
        states.check_transition(states.STOPPING, states.RUNNING)


def test_terminal_and_active_states_do_not_overlap():
    assert not states.TERMINAL & states.ACTIVE
    assert set(states.ALL) == states.TERMINAL | states.ACTIVE
