"""Write values the way systemd's unit parser reads them back (systemd.syntax(7), systemd.service(5)).

Every value goes through specifier expansion first (``%`` must be ``%%``); words
of ``ExecStart=`` and assignments of ``Environment=`` are then split and unquoted
with C escapes; at exec time ``$`` in a command line expands variables (``$$`` is
one ``$``), while ``Environment=`` values are never expanded.

>>> exec_line(["/bin/echo", "a b", "100%", "$HOME"])
'/bin/echo "a b" 100%% $$HOME'
>>> environment_assignment("GREETING", 'say "hi"')
'"GREETING=say \\\\"hi\\\\""'
"""

import re

_PLAIN_WORD = re.compile(r"^[A-Za-z0-9_@%+=:,./$-]+$")
_PREFIXES = "@-:+!|"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_C_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def specifiers(text):
    """Return *text* with ``%`` doubled, so no systemd specifier is expanded in it."""
    return text.replace("%", "%%")


def c_escape(text):
    """Return *text* escaped for the inside of a double-quoted systemd word."""
    return "".join(_C_ESCAPES.get(char, f"\\x{ord(char):02x}" if ord(char) < 0x20 or ord(char) == 0x7F else char)
                   for char in text)


def quoted(text):
    return f'"{c_escape(text)}"'


def exec_word(word, first=False):
    """Return one argv word for a command line: ``$`` and ``%`` escaped, quoted when needed.

    The *first* word (the program) is also quoted when it starts with one of the
    characters systemd reads as a prefix (``-``, ``@``, ``+``...).
    """
    word = specifiers(word).replace("$", "$$")
    if _PLAIN_WORD.match(word) and not (first and word[0] in _PREFIXES):
        return word
    return quoted(word)


def exec_line(argv, prefix=""):
    """Return the value of ``ExecStart=`` (and friends) that runs exactly *argv*.

    *prefix* is one of systemd's special executable prefixes (``-`` ignores failure).
    """
    return prefix + " ".join(exec_word(word, first=index == 0) for index, word in enumerate(argv))


def env_name_is_valid(name):
    """Return whether systemd accepts *name* as an environment variable name."""
    return bool(_ENV_NAME.match(name))


def environment_assignment(name, value):
    """Return one quoted ``NAME=value`` word for ``Environment=`` (never expanded by systemd)."""
    return quoted(specifiers(f"{name}={value}"))


def timespan(seconds):
    """Return *seconds* as a systemd time span: ``10s``, ``100ms``, ``infinity`` for None."""
    if seconds is None:
        return "infinity"
    milliseconds = int(round(seconds * 1000))
    if milliseconds % 1000 == 0:
        return f"{milliseconds // 1000}s"
    return f"{milliseconds}ms"


def path_value(path):
    """Return a path for settings that take one path (``WorkingDirectory=``), specifiers escaped."""
    return specifiers(path)
