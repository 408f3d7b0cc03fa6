"""Dotenv parsing (SPEC §4)."""

import pytest

from keplerd.config.dotenv import parse_dotenv
from keplerd.config.errors import ConfigError


def parse(text):
    return parse_dotenv(text, "app.env")


def test_plain_assignments_comments_and_blank_lines():
    assert parse("# header\n\nA=1\n  # indented comment\nB=two\n") == {"A": "1", "B": "two"}


def test_export_prefix_is_optional():
    assert parse("export A=1\nexport  B=2\n") == {"A": "1", "B": "2"}


def test_unquoted_value_is_trimmed_and_loses_trailing_comment():
    assert parse("A =  spaced value   # note\nB=a#b\nC= # only a comment\n") == {
        "A": "spaced value", "B": "a#b", "C": "",
    }


def test_empty_value():
    assert parse("A=\n") == {"A": ""}


def test_single_quotes_keep_everything_literal():
    assert parse("A='x \\n $Y # not a comment'  # comment\n") == {"A": "x \\n $Y # not a comment"}


def test_double_quotes_interpret_escapes():
    assert parse('A="line\\nbreak \\"quoted\\" back\\\\slash"\n') == {"A": 'line\nbreak "quoted" back\\slash'}


def test_unknown_escape_keeps_its_backslash():
    assert parse('A="a\\qb"\n') == {"A": "a\\qb"}


def test_values_are_not_expanded():
    assert parse("A=${HOME}/x\nB=$HOME\n") == {"A": "${HOME}/x", "B": "$HOME"}


def test_later_line_wins_and_crlf_and_bom_are_fine():
    assert parse("\ufeffA=1\r\nA=2\r\n") == {"A": "2"}


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("A=1\nnot an assignment\n", 2, "expected KEY=value"),
        ("A=1\nB=2\n1BAD=x\n", 3, "expected KEY=value"),
        ("A='open\n", 1, "unterminated single-quoted"),
        ('A="open\n', 1, "unterminated double-quoted"),
        ("A='x' trailing\n", 1, "after the closing quote"),
    ],
)
def test_malformed_line_names_file_and_line(text, line, reason):
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert caught.value.errors[0].startswith(f"app.env:{line}: invalid line")
    assert reason in caught.value.errors[0]


def test_every_malformed_line_is_reported():
    with pytest.raises(ConfigError) as caught:
        parse("bad one\nA=1\nbad two\n")
    assert [error.split(":")[1] for error in caught.value.errors] == ["1", "3"]


def test_malformed_line_content_is_not_echoed():
    with pytest.raises(ConfigError) as caught:
        parse("password hunter2\n")
    assert "hunter2" not in str(caught.value)
