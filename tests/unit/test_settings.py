"""keplerd.conf: parsing, located errors, and how flags and the environment override it."""

import argparse

import pytest

from keplerd import paths, settings
from keplerd.config.errors import ConfigError


def _args(**values):
    fields = {"config": None, "state_dir": None, "autostart_dir": None, "socket_group": None, "log_level": None,
              "metrics_listen": None}
    fields.update(values)
    return argparse.Namespace(**fields)


def _errors(text):
    with pytest.raises(ConfigError) as caught:
        settings.parse(text, "keplerd.conf")
    return caught.value.errors


def test_an_empty_file_gives_the_defaults():
    assert settings.parse("", "keplerd.conf") == settings.Settings()
    assert settings.parse("# only comments\n", "keplerd.conf") == settings.Settings()


def test_every_key_is_read_in_its_unit():
    loaded = settings.parse("""
state_dir: /srv/kepler/
socket_group: ops
autostart_dir: /srv/kepler.d
log_level: debug
lua_memory_limit: 16M
lua_time_limit: 500ms
default_stop_grace_period: 1m
""", "keplerd.conf")
    assert loaded == settings.Settings(state_dir="/srv/kepler", socket_group="ops", autostart_dir="/srv/kepler.d",
                                       log_level="debug", lua_memory_limit=16 << 20, lua_time_limit=0.5,
                                       default_stop_grace_period=60.0)


def test_an_empty_key_keeps_its_default():
    assert settings.parse("log_level:\n", "keplerd.conf").log_level == "info"


def test_every_problem_is_reported_with_its_key():
    errors = _errors("log_level: loud\nlua_time_limit: 2 seconds\nstate_dir: var/lib\nsockt_group: x\n")
    assert sorted(errors) == sorted([
        "keplerd.conf: log_level: invalid value 'loud': expected one of debug, info, warning, error",
        "keplerd.conf: lua_time_limit: invalid duration '2 seconds'",
        "keplerd.conf: state_dir: must be an absolute path, not 'var/lib'",
        "keplerd.conf: sockt_group: unknown key (did you mean 'socket_group'?)",
    ])


def test_limits_must_be_usable():
    assert _errors("lua_memory_limit: 1K\nlua_time_limit: 0\n") == [
        "keplerd.conf: lua_memory_limit: must be at least 1M",
        "keplerd.conf: lua_time_limit: must be more than 0",
    ]


def test_yaml_errors_are_located():
    assert _errors("log_level: [info\n")[0].startswith("keplerd.conf:2:1: ")
    assert _errors("- a list\n") == ["keplerd.conf: the top level must be a mapping of settings"]


def test_a_missing_default_file_is_fine_but_a_missing_named_file_is_an_error(tmp_path):
    assert settings.load(str(tmp_path / "absent.conf"), required=False) == settings.Settings()
    with pytest.raises(ConfigError, match="absent.conf: no such file"):
        settings.load(str(tmp_path / "absent.conf"), required=True)


def test_flags_override_the_file_and_the_environment_overrides_state_dir(tmp_path):
    conf = tmp_path / "keplerd.conf"
    conf.write_text("state_dir: /srv/a\nlog_level: warning\nsocket_group: ops\nautostart_dir: /srv/c\n")
    from_file = settings.resolve(_args(config=str(conf)), environ={})
    assert (from_file.state_dir, from_file.log_level, from_file.socket_group) == ("/srv/a", "warning", "ops")
    from_env = settings.resolve(_args(config=str(conf)), environ={"KEPLER_DAEMON_PATH": "/srv/env"})
    assert from_env.state_dir == "/srv/env"
    flagged = settings.resolve(_args(config=str(conf), state_dir="/srv/flag", log_level="error",
                                     socket_group="wheel", autostart_dir="/srv/d"),
                               environ={"KEPLER_DAEMON_PATH": "/srv/env"})
    assert (flagged.state_dir, flagged.log_level, flagged.socket_group, flagged.autostart_dir) == (
        "/srv/flag", "error", "wheel", "/srv/d")
    assert flagged.default_stop_grace_period == 10.0


def test_bake_options_are_keyword_arguments_of_bake():
    import inspect

    from keplerd.config.bake import bake

    options = settings.Settings(default_stop_grace_period=3.0).bake_options()
    assert options == {"default_stop_grace_period": 3.0, "lua_memory_limit": 64 << 20, "lua_time_limit": 2.0}
    assert set(options) <= set(inspect.signature(bake).parameters)


def test_an_all_comment_file_does_not_load_the_schema():
    import subprocess
    import sys

    code = ("import sys; from keplerd import settings; "
            "assert settings.parse(b'# state_dir: /x\\n\\n', 'keplerd.conf') == settings.Settings(); "
            "print('marshmallow' in sys.modules, 'yaml' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_the_cli_finds_a_state_dir_moved_by_keplerd_conf(tmp_path, monkeypatch):
    conf = tmp_path / "keplerd.conf"
    monkeypatch.delenv("KEPLER_DAEMON_PATH", raising=False)
    assert paths.state_dir(daemon_config=str(conf)) == paths.DEFAULT_STATE_DIR
    conf.write_text("# state_dir: /nowhere\nlog_level: info\n")
    assert paths.state_dir(daemon_config=str(conf)) == paths.DEFAULT_STATE_DIR
    conf.write_text("state_dir: '/srv/kepler'\n")
    assert paths.state_dir(daemon_config=str(conf)) == "/srv/kepler"
    monkeypatch.setenv("KEPLER_DAEMON_PATH", "/srv/env")
    assert paths.state_dir(daemon_config=str(conf)) == "/srv/env"
    assert paths.state_dir("/srv/flag", daemon_config=str(conf)) == "/srv/flag"


def test_a_private_state_dir_reads_no_autostart_dir_unless_told(tmp_path, monkeypatch):
    system_conf = tmp_path / "system.conf"
    system_conf.write_text("autostart_dir: /etc/kepler/conf.d\n")
    monkeypatch.setattr(settings, "DEFAULT_PATH", str(system_conf))
    assert settings.resolve(_args(), environ={}).autostart_dir == "/etc/kepler/conf.d"
    private = {"KEPLER_DAEMON_PATH": str(tmp_path / "state")}
    assert settings.resolve(_args(), environ=private).autostart_dir is None
    assert settings.resolve(_args(state_dir=str(tmp_path / "s")), environ={}).autostart_dir is None
    assert settings.resolve(_args(autostart_dir="/srv/mine"), environ=private).autostart_dir == "/srv/mine"
    own_conf = tmp_path / "own.conf"
    own_conf.write_text("log_level: debug\n")
    assert settings.resolve(_args(config=str(own_conf)), environ=private).autostart_dir is None
    own_conf.write_text("autostart_dir: /srv/own\n")
    assert settings.resolve(_args(config=str(own_conf)), environ=private).autostart_dir == "/srv/own"
    empty = tmp_path / "empty.conf"
    empty.write_text("")
    monkeypatch.setattr(settings, "DEFAULT_PATH", str(empty))
    assert settings.resolve(_args(), environ={"KEPLER_DAEMON_PATH": "/var/lib/kepler"}).autostart_dir == \
        "/etc/kepler/conf.d"
