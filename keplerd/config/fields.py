"""marshmallow fields for the value types of a config: durations, sizes, signals, unions.

Each field turns the YAML value into the snapshot's form (seconds as float, bytes
as int, signal numbers, normalised unions) or raises a ValidationError whose
message is fit to follow a key path. Union fields validate their parts with the
schemas they are given and report errors keyed by list index or map key, so key
paths never show marshmallow's internal ``key``/``value`` wrappers.
"""

import math
import re

from marshmallow import ValidationError
from marshmallow import fields as ma

from ..units import parse_duration, parse_signal, parse_size

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_RANGE = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def scalar_text(value):
    """Return a YAML scalar as environment text (``true``, ``8080``); None for other types."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    if value is None:
        return ""
    return None


def _parsing_field(parse, description):
    """Return a Field class whose values go through the units parser *parse*."""

    class Parsed(ma.Field):
        __doc__ = description

        def _deserialize(self, value, attr, data, **kwargs):
            try:
                return parse(value)
            except ValueError as error:
                raise ValidationError(str(error)) from None

    return Parsed


Duration = _parsing_field(
    lambda value: float(parse_duration(value)),
    "A duration in seconds: `100ms`, `10s`, `5m`, `1h`, `1d`; a bare number is seconds.",
)
Size = _parsing_field(parse_size, "A size in bytes: `512`, `64K`, `10MB`, `1G` (powers of 1024).")
Signal = _parsing_field(parse_signal, "A signal: `SIGTERM`, `TERM`, `term` or `15`.")


class CpuTime(Duration):
    """A CPU time limit: a duration, rounded up to whole seconds."""

    def _deserialize(self, value, attr, data, **kwargs):
        return int(math.ceil(super()._deserialize(value, attr, data, **kwargs)))


class Bool(ma.Field):
    """A YAML boolean, nothing else (no ``"yes"`` strings, no 0/1)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise ValidationError("Not a valid boolean.")
        return value


class Count(ma.Field):
    """A whole number >= *minimum*; digit strings (from expansion) are accepted."""

    def __init__(self, minimum=0, **kwargs):
        super().__init__(**kwargs)
        self.minimum = minimum

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError("Not a valid integer.")
        if value < self.minimum:
            raise ValidationError(f"must be at least {self.minimum}")
        return value


class Cpus(ma.Field):
    """A number of CPUs above 0 (``0.5``, ``2``); numeric strings (from expansion) are accepted."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValidationError("Not a valid number of CPUs.") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValidationError("Not a valid number of CPUs.")
        if value <= 0:
            raise ValidationError("must be more than 0")
        return float(value)


class Text(ma.Field):
    """A string; a YAML integer is taken as its text (``user: 1000``)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ValidationError("Not a valid string.")
        if not value:
            raise ValidationError("must not be empty")
        return value


class Choice(ma.Field):
    """One of *choices*; YAML's ``no``/``false`` is read as the word ``no`` when allowed."""

    def __init__(self, choices, **kwargs):
        super().__init__(**kwargs)
        self.choices = tuple(choices)

    def _deserialize(self, value, attr, data, **kwargs):
        if value is False and "no" in self.choices:
            value = "no"
        if not isinstance(value, str) or value not in self.choices:
            raise ValidationError(f"invalid value {value!r}: expected one of {', '.join(self.choices)}")
        return value


class Argv(ma.Field):
    """A non-empty list of strings whose first item (the program) is not empty."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list):
            raise ValidationError("must be a list of strings")
        if not value:
            raise ValidationError("must not be empty")
        _check_strings(value, allow_empty=True)
        if not value[0]:
            raise ValidationError({0: ["the program must not be empty"]})
        return list(value)


class StringList(ma.Field):
    """A list of non-empty strings (watch patterns)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list):
            raise ValidationError("must be a list of strings")
        _check_strings(value, allow_empty=False)
        return list(value)


def _check_strings(items, allow_empty):
    """Raise a ValidationError keyed by index for each item of *items* that is not a string."""
    errors = {}
    for index, item in enumerate(items):
        if not isinstance(item, str):
            errors[index] = ["Not a valid string."]
        elif not item and not allow_empty:
            errors[index] = ["must not be empty"]
    if errors:
        raise ValidationError(errors)


class Environment(ma.Field):
    """``[KEY=value, ...]`` or ``{KEY: value}``, as an ordered ``{KEY: "value"}``."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, list):
            pairs = [(index, *_split_entry(item)) for index, item in enumerate(value)]
        elif isinstance(value, dict):
            pairs = [(key, key, scalar_text(item)) for key, item in value.items()]
        else:
            raise ValidationError("must be a list of KEY=value or a mapping")
        result, errors = {}, {}
        for where, key, text in pairs:
            if key is None or not ENV_NAME.match(key):
                errors[where] = ["invalid entry: expected KEY=value with KEY like NAME_1"]
            elif text is None:
                errors[where] = ["must be a string, number or boolean"]
            else:
                result[key] = text
        if errors:
            raise ValidationError(errors)
        return result


def _split_entry(item):
    """Return ``(key, value)`` of a ``KEY=value`` list entry; ``(None, None)`` if malformed."""
    if not isinstance(item, str) or "=" not in item:
        return None, None
    key, _, value = item.partition("=")
    return key, value


class ExitCodes(ma.Field):
    """An exit code filter: ``[1, "5:10"]`` (ranges inclusive) as ``[[1, 1], [5, 10]]``."""

    def _deserialize(self, value, attr, data, **kwargs):
        items = value if isinstance(value, list) else [value]
        if not items:
            raise ValidationError("must not be empty")
        ranges, errors = [], {}
        for index, item in enumerate(items):
            try:
                ranges.append(_exit_range(item))
            except ValueError as error:
                errors[index] = [str(error)]
        if errors:
            raise ValidationError(errors if isinstance(value, list) else errors[0])
        return ranges


def _exit_range(item):
    """Return ``[lo, hi]`` for ``3``, ``"3"`` or ``"5:10"``; raise ValueError."""
    if isinstance(item, int) and not isinstance(item, bool):
        low = high = item
    elif isinstance(item, str) and item.strip().isdigit():
        low = high = int(item)
    elif isinstance(item, str) and (match := _RANGE.match(item)):
        low, high = int(match.group(1)), int(match.group(2))
    else:
        raise ValueError(f"invalid exit code filter {item!r}: expected a code or a 'low:high' range")
    if not 0 <= low <= high <= 255:
        raise ValueError(f"invalid exit code filter {item!r}: codes are 0-255, low <= high")
    return [low, high]


class OneOrSchema(ma.Field):
    """A shorthand scalar (handled by *short*) or a mapping loaded with *schema*."""

    def __init__(self, schema, short, **kwargs):
        super().__init__(**kwargs)
        self.schema, self.short = schema, short

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, dict):
            return self.schema().load(value)
        return self.short(value)
