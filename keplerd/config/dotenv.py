"""Parse dotenv files (``env_file``, SPEC §4).

One variable per line::

    # a comment
    export NAME=value          # optional `export `, trailing comment stripped
    PLAIN = spaced value       # whitespace around `=` and the value is trimmed
    SINGLE='kept $literally'   # single quotes: nothing is interpreted
    DOUBLE="line\\nbreak \\"q\\""  # double quotes: \\n \\t \\r \\" \\\\ escapes

Keys are ``[A-Za-z_][A-Za-z0-9_.-]*``; a later line wins over an earlier one.
Values are taken as written: dotenv files are *not* ``${}``-expanded (a ``$`` in
a value reaches the service unchanged). A quoted value ends on its line.
"""

import re

from .errors import ConfigError

_ASSIGNMENT = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*)$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
_COMMENT = re.compile(r"(^|\s)#")


def parse_dotenv(text, name):
    """Return the variables of the dotenv *text*; *name* locates errors (``app.env:3: ...``).

    Raises ConfigError naming every malformed line. Line contents are not quoted
    in messages: they may hold secrets.
    """
    variables, errors = {}, []
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _ASSIGNMENT.match(line)
        if not match:
            errors.append(f"{name}:{number}: invalid line: expected KEY=value")
            continue
        key, rest = match.groups()
        try:
            variables[key] = _value(rest)
        except ValueError as error:
            errors.append(f"{name}:{number}: invalid line: {error}")
    if errors:
        raise ConfigError(errors)
    return variables


def _value(rest):
    """Return the value written as *rest* (everything after ``=``)."""
    if rest.startswith("'"):
        end = rest.find("'", 1)
        if end < 0:
            raise ValueError("unterminated single-quoted value")
        _check_trailer(rest[end + 1:])
        return rest[1:end]
    if rest.startswith('"'):
        value, end = _double_quoted(rest)
        _check_trailer(rest[end:])
        return value
    comment = _COMMENT.search(rest)
    return (rest[:comment.start()] if comment else rest).strip()


def _double_quoted(rest):
    """Return the value of the double-quoted *rest* and the index after its closing quote."""
    out, pos = [], 1
    while pos < len(rest):
        char = rest[pos]
        if char == '"':
            return "".join(out), pos + 1
        if char == "\\" and pos + 1 < len(rest):
            following = rest[pos + 1]
            # An unknown escape keeps its backslash, like most dotenv readers.
            out.append(_ESCAPES.get(following, "\\" + following))
            pos += 2
        else:
            out.append(char)
            pos += 1
    raise ValueError("unterminated double-quoted value")


def _check_trailer(trailer):
    trailer = trailer.strip()
    if trailer and not trailer.startswith("#"):
        raise ValueError("unexpected text after the closing quote")
