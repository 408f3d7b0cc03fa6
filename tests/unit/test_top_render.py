"""``keplerctl top``'s screen (SPEC §19): fits 80×24, busiest first, the selection always in view."""

from keplerd.cli.top import render, row_key, sort_rows


def _rows(count):
    return [{"config_path": "/srv/app/kepler.yaml", "name": f"service-with-a-long-name-{n:02d}", "status": "running",
             "since": 40.0, "started_at": 40.0, "cpu_percent": float(n), "memory_bytes": n << 20, "processes": 1,
             "restarts": n % 3} for n in range(count)]


def test_the_screen_fits_80_by_24_with_the_selected_row_in_view():
    rows = sort_rows(_rows(50))
    assert rows[0]["name"].endswith("49"), "busiest first"
    selected = row_key(rows[40])
    lines = render(rows, selected, every_config=True, width=80, height=24, message="stop x: done", now=100.0)
    assert len(lines) == 24
    assert all(len(text) <= 80 for text, _ in lines)
    highlighted = [text for text, on in lines[2:] if on]
    assert len(highlighted) == 1 and highlighted[0].split()[:3] == ["app", "service-with-a-~", "Up"]
    assert " 9.0 " in highlighted[0], "rows[40] of 50, busiest first, is service 09"
    assert lines[-1][0] == "stop x: done"


def test_a_tiny_terminal_gets_what_fits():
    lines = render(sort_rows(_rows(5)), None, every_config=False, width=20, height=3, now=100.0)
    assert len(lines) == 3 and all(len(text) <= 20 for text, _ in lines)


def test_plain_ascii_help_without_a_utf8_locale():
    title = render([], None, False, 200, 5, unicode_ok=False)[0][0]
    assert title.isascii() and "up/down select" in title
