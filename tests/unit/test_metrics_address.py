"""Where metrics may be served (SPEC §19): loopback or a Unix socket, unless remote is allowed."""

import pytest

from keplerd.metrics.address import BadAddress, parse


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:9464", ("tcp", ("127.0.0.1", 9464))),
    ("localhost:9464", ("tcp", ("localhost", 9464))),
    ("[::1]:9464", ("tcp", ("::1", 9464))),
    ("127.8.9.10:1", ("tcp", ("127.8.9.10", 1))),
    ("/run/kepler/metrics.sock", ("unix", "/run/kepler/metrics.sock")),
])
def test_loopback_and_socket_paths_are_accepted(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize("text", ["0.0.0.0:9464", "10.0.0.1:9464", "[::]:9464", "example.com:9464"])
def test_other_hosts_need_allow_remote(text):
    with pytest.raises(BadAddress, match="metrics_allow_remote"):
        parse(text)
    assert parse(text, allow_remote=True)[0] == "tcp"


@pytest.mark.parametrize("text", ["9464", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", ":9464", "relative.sock",
                                  "127.0.0.1:http"])
def test_malformed_addresses_are_refused(text):
    with pytest.raises(BadAddress):
        parse(text, allow_remote=True)
