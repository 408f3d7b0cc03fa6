"""Small immutable records, as ``@dataclass(frozen=True)`` makes them, without importing ``dataclasses``.

``dataclasses`` imports ``inspect`` (and with it ``ast`` and ``dis``): 1.1 MiB resident
for the daemon's whole life, to declare a handful of small classes (issue #25, S1-300).

>>> class Point(Record):
...     x: int
...     y: int = 0
...     tags: list = []
>>> Point(1, y=2)
Point(x=1, y=2, tags=[])
>>> Point(1).replace(y=3) == Point(1, 3)
True
>>> Point(1).tags is Point(1).tags   # a list or dict default is copied for each record
False
"""


class Record:
    """Fields are the annotated class attributes, in order (their values are the defaults).

    Records are immutable; ``==`` and ``hash`` compare the class and the fields;
    ``replace(**changes)`` returns a changed copy, ``as_dict()`` the fields.
    """

    _fields = ()
    _defaults = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = [name for name in cls.__dict__.get("__annotations__", {}) if name not in cls._fields]
        cls._fields = cls._fields + tuple(own)
        cls._defaults = {**cls._defaults, **{name: cls.__dict__[name] for name in own if name in cls.__dict__}}

    def __init__(self, *args, **kwargs):
        name = type(self).__name__
        if len(args) > len(self._fields):
            raise TypeError(f"{name}() takes {len(self._fields)} arguments, {len(args)} given")
        values = dict(zip(self._fields, args))
        for field, value in kwargs.items():
            if field not in self._fields:
                raise TypeError(f"{name}() got an unexpected keyword argument {field!r}")
            if field in values:
                raise TypeError(f"{name}() got multiple values for argument {field!r}")
            values[field] = value
        missing = [field for field in self._fields if field not in values and field not in self._defaults]
        if missing:
            raise TypeError(f"{name}() missing arguments: {', '.join(missing)}")
        for field in self._fields:
            if field not in values:
                default = self._defaults[field]
                values[field] = type(default)(default) if isinstance(default, (list, dict, set)) else default
        self.__dict__.update(values)  # past __setattr__, which refuses

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable: use replace()")

    def __delattr__(self, name):
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _values(self):
        return tuple(self.__dict__[field] for field in self._fields)

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self):
        return hash((type(self), self._values()))

    def __repr__(self):
        fields = ", ".join(f"{field}={self.__dict__[field]!r}" for field in self._fields)
        return f"{type(self).__name__}({fields})"

    def replace(self, **changes):
        """Return a copy with *changes*."""
        return type(self)(**{**self.as_dict(), **changes})

    def as_dict(self):
        """Return the fields as a new dict (values are not copied)."""
        return {field: self.__dict__[field] for field in self._fields}
