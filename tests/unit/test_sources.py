"""Whether the files a bake read changed since (keplerd.sources): stat first, hash when it moved."""

import os

from keplerd.sources import SourceCheck, read_recorded


def recorded(tmp_path, text="A=1\n"):
    path = tmp_path / "app.env"
    path.write_text(text)
    return str(path), read_recorded(str(path))[1]


def test_an_untouched_file_has_not_changed(tmp_path):
    path, record = recorded(tmp_path)
    assert not SourceCheck().changed({path: record})


def test_new_content_is_a_change(tmp_path):
    path, record = recorded(tmp_path)
    with open(path, "w") as file:
        file.write("A=2\n")
    assert SourceCheck().changed({path: record})


def test_a_touch_or_the_same_content_written_again_is_no_change(tmp_path):
    path, record = recorded(tmp_path)
    os.utime(path, (1, 1))
    check = SourceCheck()
    assert not check.changed({path: record})
    with open(path, "w") as file:
        file.write("A=1\n")
    assert not check.changed({path: record})


def test_same_size_and_mtime_is_trusted_without_reading(tmp_path):
    # Cheap by design: only a moved size or mtime makes ps read and hash the file.
    path, record = recorded(tmp_path)
    with open(path, "w") as file:
        file.write("A=9\n")
    os.utime(path, ns=(record["mtime_ns"], record["mtime_ns"]))
    assert not SourceCheck().changed({path: record})


def test_a_deleted_file_is_a_change(tmp_path):
    path, record = recorded(tmp_path)
    os.unlink(path)
    assert SourceCheck().changed({path: record})


def test_no_record_means_nothing_to_compare():
    assert not SourceCheck().changed(None)
    assert not SourceCheck().changed({})
