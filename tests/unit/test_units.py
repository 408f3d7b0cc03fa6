"""Durations, sizes and signals as configs and the CLI write them."""

import signal

import pytest

from keplerd.units import parse_duration, parse_signal, parse_size, signal_name


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("100ms", 0.1), ("10s", 10), ("5m", 300), ("2h", 7200), ("1d", 86400), ("15", 15), (3, 3), (1.5, 1.5),
     (" 10s ", 10), ("0", 0)],
)
def test_duration_forms_give_seconds(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10 seconds", "10S", "1.5s", "-1s", "", "s", "10x", True, None, [1], -3])
def test_invalid_duration_is_rejected_with_its_value(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512", 512), (1024, 1024), ("64K", 65536), ("64kb", 65536), ("10M", 10 << 20), ("10mB", 10 << 20),
     ("1G", 1 << 30), ("1gb", 1 << 30), ("2 KB", 2048)],
)
def test_size_forms_give_bytes_in_any_case(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["12X", "1.5G", "-1", "", "K", "1TB", False, None, 1.5])
def test_invalid_size_is_rejected(text):
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


@pytest.mark.parametrize("text", ["SIGTERM", "TERM", "term", "sigterm", "15", 15, " Term "])
def test_signal_forms_give_the_number(text):
    assert parse_signal(text) == signal.SIGTERM


@pytest.mark.parametrize("text", ["SIGFOO", "FOO", "", "999", 999, True, None, "SIG_DFL", "DFL"])
def test_invalid_signal_is_rejected(text):
    with pytest.raises(ValueError, match="invalid signal"):
        parse_signal(text)


def test_signal_name_falls_back_to_the_number():
    assert signal_name(9) == "SIGKILL"
    assert signal_name(999) == "999"
