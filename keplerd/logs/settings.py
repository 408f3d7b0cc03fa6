"""The log settings of a service (or of a config, for global hook logs), as baked in the snapshot.

The snapshot already holds every field, merged field by field from the service's
``logs``, ``kepler.logs`` and the defaults of SPEC §11; this only reads it.
"""

from keplerd.model.defaults import LOG_DEFAULTS

STREAMS = ("stdout", "stderr")


class LogSettings:
    """``max_size``, ``buffer_size``, ``store`` and ``retention`` of one log owner.

    >>> LogSettings({"store": {"stdout": True, "stderr": False}}).stores("stderr")
    False
    >>> LogSettings({}).clears_on("on_stop")   # logs survive a stop (stop --clean, prune remove them)
    False
    """

    def __init__(self, baked=None):
        baked = baked or {}
        self.max_size = baked.get("max_size")
        self.buffer_size = baked.get("buffer_size") or 0
        self.store = {**LOG_DEFAULTS["store"], **(baked.get("store") or {})}
        self.retention = {**LOG_DEFAULTS["retention"], **(baked.get("retention") or {})}

    def stores(self, stream):
        """Tell whether lines of *stream* are written to disk (followers see them either way)."""
        return bool(self.store.get(stream, True))

    def clears_on(self, event):
        """Tell whether the logs are deleted when *event* (``on_start``, ``on_stop``...) happens."""
        return self.retention.get(event) == "clear"
