"""The inotify watcher in-process, on gevent's loop, against real files.

Every test synchronises on the watcher's reports (a queue with a deadline): a
change that must not count is followed by a sentinel change that must, and the
first report then names the sentinel.
"""

import errno
import os
import shutil

import gevent
import pytest
from gevent.queue import Queue
from inotify_simple import INotify

from keplerd.model.globs import GlobSet
from keplerd.supervise.watch import Watcher

DEADLINE = 10


class Recorder:
    """A watcher on *base* with *patterns*, and the changes and errors it reported."""

    def __init__(self, base, patterns, debounce=0.05, **options):
        self.base = base
        self.changes = Queue()
        self.errors = []
        self.watcher = Watcher(GlobSet(patterns, str(base)), self.changes.put, self.errors.append,
                               debounce=debounce, **options)

    def next_change(self):
        path = self.changes.get(timeout=DEADLINE)
        return os.path.relpath(path, self.base)

    def settle(self):
        """Let the watcher greenlet read what the kernel has queued so far."""
        gevent.sleep(0)


def write(path, text="x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def base(tmp_path):
    return tmp_path.resolve()


@pytest.fixture
def watch(base):
    recorders = []

    def make(patterns, **options):
        recorder = Recorder(base, patterns, **options)
        recorder.watcher.arm()
        recorders.append(recorder)
        return recorder

    yield make
    for recorder in recorders:
        recorder.watcher.disarm()


def test_writing_a_matching_file_is_reported(base, watch):
    (base / "app.py").write_text("old")
    recorder = watch(["*.py"])
    write(base / "app.py", "new")
    assert recorder.next_change() == "app.py"


@pytest.mark.parametrize("action", ["create", "delete", "move_in", "move_out", "move_within"])
def test_create_delete_and_moves_are_reported(base, watch, action):
    (base / "old.py").write_text("x")
    (base / "elsewhere").mkdir()
    recorder = watch(["*.py"])
    if action == "create":
        os.close(os.open(base / "new.py", os.O_CREAT | os.O_WRONLY))
    elif action == "delete":
        os.unlink(base / "old.py")
    elif action == "move_in":
        (base / "elsewhere/new.py").write_text("x")
        os.rename(base / "elsewhere/new.py", base / "new.py")
    elif action == "move_out":
        os.rename(base / "old.py", base / "elsewhere/old.py")
    else:
        os.rename(base / "old.py", base / "renamed.py")
    assert recorder.next_change().endswith(".py")


def test_non_matching_files_are_ignored(base, watch):
    recorder = watch(["*.py"])
    write(base / "notes.txt")
    write(base / "sub/app.py")
    write(base / "sentinel.py")
    assert recorder.next_change() == "sentinel.py"


def test_double_star_matches_nested_and_newly_created_directories(base, watch):
    write(base / "src/a/b/old.py")
    recorder = watch(["src/**/*.py"])
    write(base / "src/a/b/deep.py")
    assert recorder.next_change() == "src/a/b/deep.py"
    write(base / "src/new/er/fresh.py")
    assert recorder.next_change() == "src/new/er/fresh.py"
    write(base / "src/new/er/again.py")
    assert recorder.next_change() == "src/new/er/again.py"


def test_a_missing_root_is_watched_once_it_appears(base, watch):
    recorder = watch(["src/**/*.py"])
    write(base / "src/pkg/app.py")
    assert recorder.next_change() == "src/pkg/app.py"
    write(base / "src/pkg/other.py")
    assert recorder.next_change() == "src/pkg/other.py"


def test_deleted_directories_are_dropped_and_a_recreated_root_is_watched_again(base, watch):
    write(base / "src/a/b/c.py")
    recorder = watch(["src/**/*.py"])
    assert recorder.watcher.watched == 3
    shutil.rmtree(base / "src")
    assert recorder.next_change().startswith("src/")
    assert recorder.watcher.watched == 1    # the base dir, waiting for src to come back
    write(base / "src/x.py")
    assert recorder.next_change() == "src/x.py"


def test_directories_moved_away_are_dropped_and_moved_in_followed(base, watch):
    write(base / "src/pkg/a.py")
    os.makedirs(base / "outside")
    recorder = watch(["src/**/*.py"])
    os.rename(base / "src/pkg", base / "outside/pkg")
    assert recorder.next_change() == "src/pkg"      # its files went with it
    write(base / "outside/pkg/ignored.py")
    write(base / "src/sentinel.py")
    assert recorder.next_change() == "src/sentinel.py"
    os.rename(base / "outside/pkg", base / "src/back")
    assert recorder.next_change().startswith("src/back/")
    write(base / "src/back/more.py")
    assert recorder.next_change() == "src/back/more.py"


def test_a_burst_gives_one_report(base, watch):
    # A window wide enough that a loaded machine still fits the 50 writes in it.
    recorder = watch(["*.py"], debounce=3.0)
    for index in range(50):
        write(base / "burst.py", str(index))
        gevent.sleep(0)  # the watcher sees the events one by one, yet well within the debounce
    assert recorder.next_change() == "burst.py"
    write(base / "sentinel.py")
    assert recorder.next_change() == "sentinel.py"


def test_excluded_directories_are_never_watched(base, watch):
    write(base / "state/logs/web.stdout.log")
    recorder = watch(["**/*"], exclude=[str(base / "state")])
    assert recorder.watcher.watched == 1
    write(base / "state/logs/web.stdout.log", "more")
    write(base / "state/new/file")
    write(base / "sentinel")
    assert recorder.next_change() == "sentinel"


def test_directories_that_cannot_hold_matches_are_not_watched(base, watch):
    for name in ("src/a", "docs/x", "node_modules/pkg/lib"):
        (base / name).mkdir(parents=True)
    recorder = watch(["src/**/*.py", "*.yaml"])
    assert recorder.watcher.watched == 3    # base, src, src/a


def test_disarm_stops_reporting_and_closes_the_fd(base, watch):
    recorder = watch(["*.py"])
    fd = recorder.watcher._inotify.fileno()
    recorder.watcher.disarm()
    write(base / "app.py")
    recorder.settle()
    assert recorder.changes.empty() and recorder.watcher.watched == 0
    with pytest.raises(OSError):
        os.fstat(fd)


class LimitedInotify(INotify):
    """A real inotify that refuses watches beyond *limit*, as the kernel does past max_user_watches."""

    limit = 2

    def add_watch(self, path, mask):
        if getattr(self, "added", 0) >= self.limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.added = getattr(self, "added", 0) + 1
        return super().add_watch(path, mask)


def test_watch_limit_exhaustion_is_reported_once_and_the_rest_still_watched(base, watch):
    for name in "abcde":
        (base / "src" / name).mkdir(parents=True)
    recorder = watch(["src/**"], open_inotify=LimitedInotify)
    assert len(recorder.errors) == 1 and "max_user_watches" in recorder.errors[0]
    assert recorder.watcher.watched == 2 and recorder.watcher.error == recorder.errors[0]
    write(base / "src/top.txt")
    assert recorder.next_change() == "src/top.txt"


def test_too_many_inotify_instances_is_reported(base, watch):
    def refuse(**options):
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    recorder = watch(["*.py"], open_inotify=refuse)
    assert recorder.watcher.watched == 0
    assert recorder.errors and "max_user_instances" in recorder.errors[0]
