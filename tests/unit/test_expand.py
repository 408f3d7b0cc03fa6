"""Variable expansion forms (SPEC §5)."""

import pytest

from keplerd.config.expand import expand

VARS = {"NAME": "web", "EMPTY": "", "PORT": "8080", "B": "bee"}


@pytest.mark.parametrize(
    ("text", "result"),
    [
        ("${NAME}", "web"),
        ("app-${NAME}-${PORT}", "app-web-8080"),
        ("${MISSING}", ""),
        ("${EMPTY}", ""),
    ],
)
def test_braced_reference_gives_the_value_or_empty(text, result):
    assert expand(text, VARS) == result


@pytest.mark.parametrize(
    ("text", "result"),
    [("${MISSING:-dflt}", "dflt"), ("${EMPTY:-dflt}", "dflt"), ("${NAME:-x}", "web"), ("${MISSING:-}", "")],
)
def test_default_applies_when_unset_or_empty(text, result):
    assert expand(text, VARS) == result


@pytest.mark.parametrize(
    ("text", "result"),
    [("${NAME:+alt}", "alt"), ("${EMPTY:+alt}", ""), ("${MISSING:+alt}", "")],
)
def test_alternative_applies_when_set_and_non_empty(text, result):
    assert expand(text, VARS) == result


@pytest.mark.parametrize(
    ("text", "result"),
    [
        ("${MISSING:-${B}}", "bee"),
        ("${MISSING:-${ALSO:-deep}}", "deep"),
        ("${NAME:+${B}-${PORT}}", "bee-8080"),
        ("${MISSING:-a$$b}", "a$b"),
    ],
)
def test_nested_expressions_in_default_and_alternative(text, result):
    assert expand(text, VARS) == result


def test_double_dollar_is_a_literal_dollar():
    assert expand("cost $$5 and $${NAME}", VARS) == "cost $5 and ${NAME}"


def test_bare_dollar_reference_is_left_literal():
    assert expand("$NAME and $ and a$", VARS) == "$NAME and $ and a$"


@pytest.mark.parametrize(
    ("text", "result"),
    [("~", "/home/ann"), ("~/data", "/home/ann/data"), ("~user/x", "~user/x"), ("a/~/b", "a/~/b")],
)
def test_leading_tilde_is_the_callers_home(text, result):
    assert expand(text, {}, home="/home/ann") == result


def test_home_is_not_expanded_again():
    assert expand("~/${NAME}", VARS, home="/h/$${x}") == "/h/$${x}/web"


def test_tilde_without_home_stays():
    assert expand("~/x", {}) == "~/x"


@pytest.mark.parametrize("text", ["${NAME", "${", "a ${NAME:-x", "${A:-${B}"])
def test_unterminated_reference_is_an_error(text):
    with pytest.raises(ValueError, match="unterminated"):
        expand(text, VARS)


@pytest.mark.parametrize("text", ["${1A}", "${}", "${A B}", "${-x}"])
def test_invalid_name_is_an_error(text):
    with pytest.raises(ValueError, match="invalid"):
        expand(text, VARS)


@pytest.mark.parametrize("text", ["${NAME-x}", "${NAME:?msg}", "${NAME+x}"])
def test_unsupported_shell_forms_are_errors(text):
    with pytest.raises(ValueError, match="invalid reference to NAME"):
        expand(text, VARS)
