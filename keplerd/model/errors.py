"""Errors that name what a request got wrong, shared by the runtime and the control server."""


class UnknownName(LookupError):
    """A request named a service or log cursor that does not exist; the message names it.

    Its own class, not ``KeyError``: the control server answers it as the client's
    mistake, while a ``KeyError`` from a bug reaches the logged internal-error path.
    """
