"""The man pages are clean roff and say what the code does: commands, flags, settings, keys.

The lists are derived from the code (argparse parsers, marshmallow schemas), so a
flag added without documentation, or documentation left after a flag is gone,
fails here.
"""

import argparse
import os
import re
import shutil
import subprocess

import pytest
from marshmallow import fields as ma

from keplerd import settings
from keplerd.cli.main import build_parser
from keplerd.config import schema, settings_schema

MAN = os.path.join(os.path.dirname(__file__), "..", "..", "man")
PAGES = ["keplerctl.1", "kepler.yaml.5", "keplerd.conf.5", "keplerd.8"]
DEFAULT_CONF = os.path.join(os.path.dirname(__file__), "..", "..", "etc", "kepler", "keplerd.conf")
GLOBAL_DESTS = {"help", "file", "verbose", "json"}
FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][A-Za-z0-9-]*)")


def _read(page):
    with open(os.path.join(MAN, page)) as file:
        return file.read()


def _sections(text, macro):
    """Return ``{title: body}`` for the ``.SH`` or ``.SS`` sections of roff *text*."""
    parts = re.split(rf"^\.{macro} (.+)$", text, flags=re.MULTILINE)
    return {title.strip().strip('"'): body for title, body in zip(parts[1::2], parts[2::2])}


def _tagged_flags(body):
    """Return the flags named in the tags (the line after each ``.TP``) of a roff section."""
    tags = re.findall(r"^\.TP\n(.+)$", body, flags=re.MULTILINE)
    return {flag for tag in tags for flag in FLAG.findall(tag.replace("\\-", "-"))}


def _bold_words(text):
    """Return the words set in bold: ``.B``/``.BR``/``.RB`` lines and ``\\fB...`` runs."""
    runs = []
    for line in text.replace("\\-", "-").splitlines():
        if re.match(r"^\.(B|BR|RB|BI|IB)\b", line):
            runs.append(line[3:])
        runs.extend(re.findall(r"\\fB(.*?)\\f[RPI]", line))
    # `retention.on_start` documents both keys.
    return {word for run in runs for word in re.findall(r"\w+", run)}


def _options(parser, own_only):
    """Return the option strings of *parser*, leaving out hidden ones (and globals when *own_only*)."""
    return {option for action in parser._actions if action.option_strings and action.help != argparse.SUPPRESS
            and not (own_only and action.dest in GLOBAL_DESTS) for option in action.option_strings}


def _commands(parser, path=()):
    """Yield ``(command path, parser)`` for every command keplerctl can run."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                if subparser.get_default("run") is not None:
                    yield " ".join((*path, name)), subparser
                yield from _commands(subparser, (*path, name))


@pytest.mark.parametrize("page", PAGES)
def test_man_page_is_clean_roff(page):
    groff = shutil.which("groff")
    assert groff, "groff is missing: `make test-tools` installs it (Debian package groff-base)"
    result = subprocess.run([groff, "-man", "-ww", "-z", os.path.join(MAN, page)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_keplerctl_page_documents_every_command_and_no_other():
    documented = set(_sections(_sections(_read("keplerctl.1"), "SH")["COMMANDS"], "SS"))
    assert documented == {name for name, _ in _commands(build_parser())}


def test_keplerctl_page_documents_every_flag_of_every_command_and_no_other():
    commands = _sections(_sections(_read("keplerctl.1"), "SH")["COMMANDS"], "SS")
    for name, parser in _commands(build_parser()):
        assert _tagged_flags(commands[name]) == _options(parser, own_only=True), f"keplerctl {name}"


def test_keplerctl_page_documents_the_global_options():
    options = _sections(_read("keplerctl.1"), "SH")["OPTIONS"]
    assert _tagged_flags(options) == _options(build_parser(), own_only=False)


def test_keplerd_page_documents_every_flag_and_no_other():
    options = _sections(_read("keplerd.8"), "SH")["OPTIONS"]
    assert _tagged_flags(options) == _options(settings.build_parser(), own_only=False)


def test_keplerd_conf_page_documents_every_key_and_no_other():
    keys = _sections(_read("keplerd.conf.5"), "SH")["KEYS"]
    tags = re.findall(r"^\.TP\n\.BR (\w+)", keys, flags=re.MULTILINE)
    assert set(tags) == set(settings_schema.SettingsSchema().fields)


def test_the_default_keplerd_conf_lists_every_key_with_its_default():
    with open(DEFAULT_CONF) as file:
        commented = [line[1:] for line in file if re.match(r"^#\w+:", line)]
    uncommented = settings.parse("".join(commented), "keplerd.conf")
    assert uncommented == settings.Settings()
    assert len(commented) == len(settings_schema.SettingsSchema().fields)


def _schema_keys(schema_class):
    keys = set()
    for name, field in schema_class().fields.items():
        keys.add(name)
        nested = getattr(field, "nested", None) or getattr(field, "schema", None)
        if isinstance(field, (ma.Nested, schema.fields.OneOrSchema)) and isinstance(nested, type):
            keys |= _schema_keys(nested)
    return keys


def test_kepler_yaml_page_documents_every_key_of_the_schema():
    keys = set()
    for schema_class in (schema.TopSchema, schema.KeplerSchema, schema.ServiceSchema, schema.EdgeSchema):
        keys |= _schema_keys(schema_class)
    missing = keys - _bold_words(_read("kepler.yaml.5"))
    assert not missing, f"kepler.yaml(5) does not document: {sorted(missing)}"
