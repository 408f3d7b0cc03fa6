from keplerd.cli.output import iso_time, ps_json_row, status_text, table
from keplerd.units import format_age

NOW = 1_000_000.0


def _row(status, **fields):
    return {"name": "web", "status": status, **fields}


def test_status_words_of_ps():
    assert status_text(_row("running", started_at=NOW - 300, since=NOW - 300), NOW) == "Up 5m"
    assert status_text(_row("healthy", started_at=NOW - 300, since=NOW - 10), NOW) == "Up 5m (healthy)"
    assert status_text(_row("unhealthy", started_at=NOW - 120, since=NOW), NOW) == "Up 2m (unhealthy)"
    assert status_text(_row("starting", since=NOW), NOW) == "Starting"
    assert status_text(_row("stopping", since=NOW), NOW) == "Stopping"
    assert status_text(_row("stopped", since=NOW), NOW) == "Stopped"
    assert status_text(_row("exited", exit_code=0, since=NOW - 14), NOW) == "Exited (0) 14s ago"
    assert status_text(_row("exited", exit_code=1, since=NOW - 5), NOW) == "Exited (1) 5s ago"
    assert status_text(_row("killed", signal=9, since=NOW - 3), NOW) == "Killed (SIGKILL) 3s ago"
    assert status_text(_row("failed", since=NOW - 2), NOW) == "Failed 2s ago"


def test_ages_use_the_largest_unit():
    assert [format_age(s) for s in (45, 300, 3 * 3600 + 5, 2 * 86400 + 7)] == ["45s", "5m", "3h", "2d"]


def test_ps_json_row_has_the_documented_fields():
    row = ps_json_row({"config_path": "/c/kepler.yaml", "owner": "alice", "name": "web", "status": "killed",
                       "pid": None, "exit_code": None, "signal": 9, "since": 5.0, "restarts": 2})
    assert row == {"config": "/c/kepler.yaml", "owner": "alice", "name": "web", "service": "web", "replica": None,
                   "status": "killed", "pid": None, "exit_code": None, "signal": "SIGKILL", "since": 5.0,
                   "restarts": 2, "health": None, "reason": None, "started_at": None, "cpu_seconds": 0.0,
                   "cpu_percent": 0.0, "memory_bytes": 0, "processes": 0, "config_changed": False,
                   "status_text": None}


def test_table_aligns_columns():
    assert table(["A", "BB"], [["xxx", "y"]]).splitlines() == ["A     BB", "xxx   y"]


def test_iso_time_has_milliseconds_in_utc():
    assert iso_time(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"


def test_status_words_of_a_back_off_and_of_giving_up():
    assert status_text(_row("starting", since=NOW, backoff_until=NOW + 1.2, retries=3), NOW) == \
        "Restarting in 2s (3 retries)"
    assert status_text(_row("starting", since=NOW, backoff_until=NOW - 1, retries=1), NOW) == \
        "Restarting in 0s (1 retry)"
    assert status_text(_row("exited", exit_code=1, since=NOW - 5, gave_up=True, retries=5), NOW) == \
        "Exited (1) 5s ago, gave up after 5 retries"


def test_a_scale_event_says_the_counts_and_the_rename():
    from keplerd.cli.events import describe

    event = {"kind": "scale", "replicas": 3, "previous": 1, "renamed": {"web": "web.1"}}
    assert describe(event) == "scale 1 -> 3, web is now web.1"
    assert describe({**event, "renamed": {}}) == "scale 1 -> 3"


def test_a_plan_printed_on_a_terminal_without_the_arrow_gets_a_question_mark_not_a_traceback():
    import io

    from keplerd.cli.apply import print_plan

    raw = io.BytesIO()
    latin1 = io.TextIOWrapper(raw, encoding="latin-1")
    entry = {"service": "web", "change": "changed", "fields": ["replicas"], "action": "scale", "because": [],
             "replicas": [1, 3]}
    print_plan({"plan": [entry]}, latin1)
    latin1.flush()
    assert raw.getvalue() == b"web  changed: replicas -> scale 1 ? 3\n"
