"""Live log chunks as followers are sent them: shared by every follower, JSON-encoded once.

Every follower of a service is handed the same writes; the daemon's cost of fifty
followers was encoding the same text fifty times (73 % of its time in S9). A write
becomes one ``Chunk`` for all the followers it is handed to, its text encoded into
JSON on first use; a batch is the encoded chunks joined, and the batch itself is
kept for the other followers that take the same one (usually all: woken by the same
burst, they take it together).
"""

import json

from keplerd.control.protocol import RawJSON

NEWLINE = b"\n"


class Chunk:
    """One write of a log stream (whole lines), handed to every follower of it."""

    __slots__ = ("name", "stream", "data", "_json")

    def __init__(self, name, stream, data):
        self.name = name
        self.stream = stream
        self.data = data
        self._json = None

    @property
    def json(self):
        """The text as the inside of a JSON string, UTF-8: encoded by the first follower to send it."""
        if self._json is None:
            self._json = _json_text(self.data)
        return self._json


def _json_text(data):
    return json.dumps(data.decode("utf-8", "replace"), ensure_ascii=False)[1:-1].encode()


def _runs(chunks):
    """Group consecutive chunks of one stream: ``[(name, stream, [chunk, ...]), ...]``."""
    runs = []
    for chunk in chunks:
        if runs and runs[-1][0] == chunk.name and runs[-1][1] == chunk.stream:
            runs[-1][2].append(chunk)
        else:
            runs.append((chunk.name, chunk.stream, [chunk]))
    return runs


def merge_runs(chunks):
    """Return *chunks* as ``[[name, stream, text], ...]``, consecutive chunks of one stream as one text."""
    return [[name, stream, b"".join(chunk.data for chunk in run).decode("utf-8", "replace")]
            for name, stream, run in _runs(chunks)]


def encode_runs(chunks):
    """Return ``RawJSON`` of ``merge_runs(chunks)``, from the chunks' own encodings.

    Encoding chunk by chunk is encoding the joined text when every chunk but the last
    of a run ends a line: a character cannot span a newline. Otherwise (never from
    the pumps, which hand over whole lines) the run is encoded whole.
    """
    parts = [b"["]
    for index, (name, stream, run) in enumerate(_runs(chunks)):
        parts.append(b"%s[%s,%s,\"" % (b"," if index else b"", _dumps(name), _dumps(stream)))
        if all(chunk.data.endswith(NEWLINE) for chunk in run[:-1]):
            parts += [chunk.json for chunk in run]
        else:
            parts.append(_json_text(b"".join(chunk.data for chunk in run)))
        parts.append(b"\"]")
    parts.append(b"]")
    return RawJSON(b"".join(parts))


def _dumps(value):
    return json.dumps(value, ensure_ascii=False).encode()


class SharedBatches:
    """The chunk of the write being handed out, and the JSON of the last few batches taken.

    A batch is keyed by its chunks (the very objects: a hit is the same batch).
    Kept only while some follower listens, and only a few (a batch is at most
    ``MAX_BATCH_BYTES``).
    """

    def __init__(self, size=4):
        self.size = size
        self.users = 0
        self._last = None
        self._encoded = {}

    def chunk(self, name, stream, data):
        """Return the ``Chunk`` of this write: the same one for every follower it is handed to."""
        last = self._last
        if last is None or last.data is not data or last.name != name or last.stream != stream:
            last = self._last = Chunk(name, stream, data)
        return last

    def encoded(self, chunks):
        """Return ``encode_runs(chunks)`` (*chunks* a tuple), encoded once for all who take this batch."""
        encoded = self._encoded.get(chunks)
        if encoded is None:
            encoded = encode_runs(chunks)
            if chunks:
                if len(self._encoded) >= self.size:
                    del self._encoded[next(iter(self._encoded))]  # the oldest: its followers have moved on
                self._encoded[chunks] = encoded
        return encoded

    def leave(self):
        """A follower stopped listening; with none left, nothing is worth keeping."""
        self.users -= 1
        if self.users <= 0:
            self.users = 0
            self._last = None
            self._encoded.clear()


SHARED = SharedBatches()
