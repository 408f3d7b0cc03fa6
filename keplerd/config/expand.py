"""Expand ``${VAR}`` references in config strings (SPEC §5).

Forms, as in docker compose:

* ``${VAR}``          the value of VAR, empty when unset;
* ``${VAR:-default}`` *default* when VAR is unset or empty;
* ``${VAR:+alt}``     *alt* when VAR is set and non-empty, else empty;
* ``$$``              a literal ``$``;
* a leading ``~`` or ``~/``: the home directory of the user running the CLI.

*default* and *alt* may contain expressions themselves (``${A:-${B:-x}}``). A bare
``$VAR`` without braces is left as written (so shell text such as ``$PATH``
inside a value survives), and so is ``~user``. Other shell forms (``${VAR-x}``,
``${VAR:?msg}``) are errors rather than silently literal.

>>> expand("${HOME}/app", {"HOME": "/home/ann"})
'/home/ann/app'
>>> expand("${PORT:-8080} $$5 ~/x", {}, home="/root")
'8080 $5 ~/x'
>>> expand("~/x", {}, home="/root")
'/root/x'
"""

import re

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def expand(text, variables, home=None):
    """Return *text* with its references replaced from *variables*; raise ValueError."""
    if home is not None and (text == "~" or text.startswith("~/")):
        text = home + text[1:]
        prefix_len = len(home)
    else:
        prefix_len = 0
    value, _ = _expand_until(text, prefix_len, variables, closing=False)
    return text[:prefix_len] + value


def _expand_until(text, pos, variables, closing):
    """Expand from *pos* to the end, or to the ``}`` closing an enclosing ``${``.

    Return the expanded text and the index just past what was consumed.
    """
    out = []
    while pos < len(text):
        char = text[pos]
        if closing and char == "}":
            return "".join(out), pos + 1
        if text.startswith("$$", pos):
            out.append("$")
            pos += 2
        elif text.startswith("${", pos):
            value, pos = _expand_reference(text, pos, variables)
            out.append(value)
        else:
            out.append(char)
            pos += 1
    if closing:
        raise ValueError(f"unterminated '${{' in {text!r}")
    return "".join(out), pos


def _expand_reference(text, start, variables):
    """Expand the ``${...}`` starting at *start*; return its value and the end index."""
    match = _NAME.match(text, start + 2)
    if not match:
        if "}" not in text[start:]:
            raise ValueError(f"unterminated '${{' in {text!r}")
        raise ValueError(f"invalid variable name in {text!r}")
    name, pos = match.group(), match.end()
    value = variables.get(name) or ""
    if text.startswith("}", pos):
        return value, pos + 1
    operator = text[pos:pos + 2]
    if operator not in (":-", ":+"):
        if pos >= len(text):
            raise ValueError(f"unterminated '${{' in {text!r}")
        forms = f"${{{name}}}, ${{{name}:-default}} or ${{{name}:+alt}}"
        raise ValueError(f"invalid reference to {name} in {text!r}: use {forms}")
    word, pos = _expand_until(text, pos + 2, variables, closing=True)
    if operator == ":-":
        return (value or word), pos
    return (word if value else ""), pos
