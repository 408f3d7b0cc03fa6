"""``keplerctl events`` across a cut connection: it asks from its last event and shows none twice."""

from keplerd.cli.events import Reader


def _event(seq):
    return {"kind": "state", "seq": seq, "service": "web"}


def test_a_reader_resumes_after_its_last_event_and_drops_what_it_already_showed(capsys):
    shown = []
    reader = Reader(shown.append, "kepler.yaml")
    assert reader.resume_fields() == {}
    reader.on_event({"kind": "subscribed", "feed": "f1", "next_seq": 7, "missed": 0})
    reader.on_event(_event(7))
    reader.on_event(_event(8))
    assert reader.resume_fields() == {"feed": "f1", "after": 8}
    # Connected again: the daemon replays from 9, but a replay that overlaps shows nothing twice.
    reader.on_event({"kind": "subscribed", "feed": "f1", "next_seq": 11, "missed": 0})
    for seq in (8, 9, 10, 11):
        reader.on_event(_event(seq))
    assert [event["seq"] for event in shown] == [7, 8, 9, 10, 11]
    assert capsys.readouterr().err.count("watching the events") == 1


def test_a_reader_says_what_it_missed_and_when_the_daemon_restarted(capsys):
    shown = []
    reader = Reader(shown.append, "kepler.yaml")
    reader.on_event({"kind": "subscribed", "feed": "f1", "next_seq": 1, "missed": 0})
    reader.on_event(_event(1))
    reader.on_event({"kind": "subscribed", "feed": "f1", "next_seq": 2000, "missed": 12})
    assert "12 event(s) were missed" in capsys.readouterr().err
    reader.on_event({"kind": "subscribed", "feed": "f2", "next_seq": 3, "missed": None})
    assert "keplerd restarted" in capsys.readouterr().err
    reader.on_event(_event(3))   # a new sequence: counted from its own start
    assert [event["seq"] for event in shown] == [1, 3] and reader.resume_fields() == {"feed": "f2", "after": 3}
