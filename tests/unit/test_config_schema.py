"""Validation errors: each names the file and the key path (SPEC §2)."""

import pathlib
import re
import textwrap

import pytest

from keplerd.config import schema
from keplerd.config.bake import check
from keplerd.config.errors import ConfigError
from keplerd.model.graph import CONDITIONS

WEB = "services:\n  web:\n    command: [x]\n"


def errors_of(tmp_path, text, env=None):
    path = tmp_path / "kepler.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(ConfigError) as caught:
        check(str(path), env or {}, "/home/ann")
    assert str(caught.value) == "\n".join(caught.value.errors)
    return caught.value.errors


def test_valid_minimal_config_passes(tmp_path):
    path = tmp_path / "kepler.yaml"
    path.write_text("services:\n  web:\n    command: [sleep, '1']\n")
    assert check(str(path), {}, "/") is None


def test_unknown_top_level_key_suggests_the_known_one(tmp_path):
    errors = errors_of(tmp_path, "servics: {}\nservices:\n  a: {command: [x]}\n")
    assert errors == ["kepler.yaml: servics: unknown key (did you mean 'services'?)"]


def test_unknown_service_key(tmp_path):
    errors = errors_of(tmp_path, "services:\n  web:\n    command: [x]\n    restrat: always\n")
    assert errors == ["kepler.yaml: services.web.restrat: unknown key (did you mean 'restart'?)"]


def test_unknown_nested_key(tmp_path):
    errors = errors_of(tmp_path, """\
        kepler:
          logs: {retention: {on_stopp: clear}}
        services:
          web:
            command: [x]
            healthcheck: {test: x, color: red}
        """)
    assert errors == [
        "kepler.yaml: kepler.logs.retention.on_stopp: unknown key (did you mean 'on_stop'?)",
        "kepler.yaml: services.web.healthcheck.color: unknown key",
    ]


def test_missing_services(tmp_path):
    errors = errors_of(tmp_path, "kepler: {sys_env: clear}\n")
    assert errors == ["kepler.yaml: services: required key missing"]


@pytest.mark.parametrize("services", ["{}", "[]", "~"])
def test_empty_services(tmp_path, services):
    errors = errors_of(tmp_path, f"services: {services}\n")
    assert errors == ["kepler.yaml: services: must be a non-empty mapping of service names to services"]


def test_top_level_must_be_a_mapping(tmp_path):
    assert errors_of(tmp_path, "- a\n") == ["kepler.yaml: the top level must be a mapping"]


@pytest.mark.parametrize("name", ["web!", "a.b", "caf\u00e9", "with space"])
def test_bad_service_name(tmp_path, name):
    errors = errors_of(tmp_path, f"services:\n  '{name}':\n    command: [x]\n")
    problem = f"invalid service name '{name}': use letters, digits, '_' and '-'"
    assert errors == [f"kepler.yaml: services.{name}: {problem}"]


def test_global_is_a_reserved_service_name(tmp_path):
    errors = errors_of(tmp_path, "services:\n  global:\n    command: [x]\n")
    assert errors == ["kepler.yaml: services.global: 'global' is a reserved name"]


def test_service_must_be_a_mapping(tmp_path):
    assert errors_of(tmp_path, "services:\n  web: [x]\n") == ["kepler.yaml: services.web: must be a mapping"]


def test_missing_command(tmp_path):
    errors = errors_of(tmp_path, "services:\n  web:\n    working_dir: /tmp\n")
    assert errors == ["kepler.yaml: services.web.command: required key missing"]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("[]", "services.web.command: must not be empty"),
        ("echo hi", "services.web.command: must be a list of strings"),
        ("['', x]", "services.web.command.0: the program must not be empty"),
        ("~", "services.web.command: must not be empty"),
    ],
)
def test_command_must_be_a_non_empty_argv(tmp_path, command, message):
    assert errors_of(tmp_path, f"services:\n  web:\n    command: {command}\n") == [f"kepler.yaml: {message}"]


def test_number_in_command(tmp_path):
    errors = errors_of(tmp_path, "services:\n  web:\n    command: [sleep, 5]\n")
    assert errors == ["kepler.yaml: services.web.command.1: Not a valid string."]


def test_bad_duration(tmp_path):
    errors = errors_of(tmp_path, WEB + "    healthcheck: {test: x, interval: 10 seconds}\n")
    assert errors == ["kepler.yaml: services.web.healthcheck.interval: invalid duration '10 seconds'"]


def test_bad_size(tmp_path):
    errors = errors_of(tmp_path, "services:\n  web:\n    command: [x]\n    limits: {memory: 12X}\n")
    assert errors == ["kepler.yaml: services.web.limits.memory: invalid size '12X'"]


def test_bad_signal(tmp_path):
    errors = errors_of(tmp_path, "services:\n  web:\n    command: [x]\n    stop_signal: SIGFOO\n")
    assert errors == ["kepler.yaml: services.web.stop_signal: invalid signal 'SIGFOO'"]


def test_undefined_dependency(tmp_path):
    errors = errors_of(tmp_path, "services:\n  web:\n    command: [x]\n    depends_on: [db]\n")
    assert errors == ["kepler.yaml: services.web.depends_on.db: undefined service 'db'"]


def test_cycle_is_printed(tmp_path):
    errors = errors_of(tmp_path, """\
        services:
          a: {command: [x], depends_on: [b]}
          b: {command: [x], depends_on: {a: {condition: service_healthy}}}
        """)
    assert errors == ["kepler.yaml: services: dependency cycle: a -> b -> a"]


def test_self_dependency_is_a_cycle(tmp_path):
    errors = errors_of(tmp_path, "services:\n  a: {command: [x], depends_on: [a]}\n")
    assert errors == ["kepler.yaml: services: dependency cycle: a -> a"]


def test_duplicate_dependency_in_list(tmp_path):
    errors = errors_of(tmp_path, "services:\n  a: {command: [x], depends_on: [b, b]}\n  b: {command: [x]}\n")
    assert errors == ["kepler.yaml: services.a.depends_on.1: duplicate dependency 'b'"]


@pytest.mark.parametrize("restart", ["no", "false", "{watch: [src]}"])
def test_policy_no_with_watch(tmp_path, restart):
    if not restart.startswith("{"):
        restart = f"{{policy: {restart}, watch: ['*.py']}}"
    errors = errors_of(tmp_path, f"services:\n  web:\n    command: [x]\n    restart: {restart}\n")
    assert errors == [
        "kepler.yaml: services.web.restart.watch: "
        "not allowed with policy 'no' (set policy: always or on-failure)"
    ]


def test_bad_restart_policy(tmp_path):
    errors = errors_of(tmp_path, "services:\n  web:\n    command: [x]\n    restart: sometimes\n")
    assert errors == [
        "kepler.yaml: services.web.restart: invalid value 'sometimes': expected one of no, always, on-failure"
    ]


def test_hook_with_run_and_command(tmp_path):
    errors = errors_of(tmp_path, WEB + "    hooks:\n      pre_start: {run: a, command: [b]}\n")
    assert errors == ["kepler.yaml: services.web.hooks.pre_start: a hook takes `run` or `command`, not both"]


def test_hook_with_neither_run_nor_command(tmp_path):
    errors = errors_of(tmp_path, "kepler:\n  hooks:\n    on_init: {user: root}\n" + WEB)
    assert errors == ["kepler.yaml: kepler.hooks.on_init: a hook needs `run` or `command`"]


def test_hook_names_differ_between_global_and_service(tmp_path):
    errors = errors_of(tmp_path, """\
        kepler:
          hooks: {post_exit: {run: x}, pre_cleanup: {run: x}}
        services:
          web:
            command: [x]
            hooks: {pre_cleanup: {run: x}, post_exit: {run: x}, post_healthcheck_fail: {run: x}}
        """)
    assert errors == [
        "kepler.yaml: kepler.hooks.post_exit: unknown key (did you mean 'post_stop'?)",
        "kepler.yaml: services.web.hooks.pre_cleanup: unknown key",
    ]


@pytest.mark.parametrize(
    ("filter_", "message"),
    [
        ('["9:3"]', "exit_code.0: invalid exit code filter '9:3': codes are 0-255, low <= high"),
        ("[1, x]", "exit_code.1: invalid exit code filter 'x': expected a code or a 'low:high' range"),
        ("[256]", "exit_code.0: invalid exit code filter 256: codes are 0-255, low <= high"),
        ("[]", "exit_code: must not be empty"),
        ("[true]", "exit_code.0: invalid exit code filter True: expected a code or a 'low:high' range"),
    ],
)
def test_bad_exit_code_filter(tmp_path, filter_, message):
    errors = errors_of(tmp_path, f"""\
        services:
          db: {{command: [x]}}
          alarm:
            command: [x]
            depends_on: {{db: {{condition: service_failed, exit_code: {filter_}}}}}
        """)
    assert errors == [f"kepler.yaml: services.alarm.depends_on.db.{message}"]


def test_exit_code_only_for_failed_and_stopped(tmp_path):
    errors = errors_of(tmp_path, """\
        services:
          db: {command: [x]}
          web: {command: [x], depends_on: {db: {exit_code: [1]}}}
        """)
    assert errors == [
        "kepler.yaml: services.web.depends_on.db.exit_code: "
        "only applies to service_failed and service_stopped"
    ]


def test_bad_condition(tmp_path):
    errors = errors_of(tmp_path, """\
        services:
          db: {command: [x]}
          web: {command: [x], depends_on: {db: {condition: service_ready}}}
        """)
    assert len(errors) == 1
    where = "kepler.yaml: services.web.depends_on.db.condition"
    assert errors[0].startswith(f"{where}: invalid value 'service_ready'")


def test_bad_environment_entries(tmp_path):
    errors = errors_of(tmp_path, WEB + "    environment: [A=1, JUSTNAME, {B: 2}]\n")
    assert errors == [
        "kepler.yaml: services.web.environment.1: invalid entry: expected KEY=value with KEY like NAME_1",
        "kepler.yaml: services.web.environment.2: invalid entry: expected KEY=value with KEY like NAME_1",
    ]


def test_healthcheck_needs_a_test(tmp_path):
    errors = errors_of(tmp_path, "services:\n  web:\n    command: [x]\n    healthcheck: {interval: 5s}\n")
    assert errors == ["kepler.yaml: services.web.healthcheck: needs exactly one of `test`, `http` and `tcp`"]


def test_healthcheck_takes_only_one_kind_of_probe(tmp_path):
    errors = errors_of(tmp_path, "services:\n  web:\n    command: [x]\n"
                                 "    healthcheck: {test: 'true', tcp: 'localhost:80'}\n")
    assert errors == ["kepler.yaml: services.web.healthcheck: needs exactly one of `test`, `http` and `tcp` "
                      "(got test, tcp)"]


@pytest.mark.parametrize("check, message", [
    ("{http: 'http://example.com/'}", "http: host 'example.com' is not an IP address, localhost or a name in "
                                      "/etc/hosts (the daemon does no DNS lookups)"),
    ("{tcp: 'db.example:5432'}", "tcp: host 'db.example' is not an IP address, localhost or a name in "
                                 "/etc/hosts (the daemon does no DNS lookups)"),
    ("{http: 'https://127.0.0.1/'}", "http: https is not supported: the daemon probes plain http "
                                     "(use a `test` for TLS)"),
    ("{http: 'ftp://127.0.0.1/'}", "http: invalid URL 'ftp://127.0.0.1/': expected http://host[:port][/path]"),
    ("{tcp: 'localhost'}", "tcp: invalid address 'localhost': expected HOST:PORT with a port from 1 to 65535"),
    ("{tcp: 'localhost:0'}", "tcp: invalid address 'localhost:0': expected HOST:PORT with a port from 1 to 65535"),
])
def test_http_and_tcp_targets_the_daemon_cannot_probe_without_dns(tmp_path, monkeypatch, check, message):
    monkeypatch.setattr("keplerd.model.endpoints.HOSTS_FILE", str(tmp_path / "hosts"))
    errors = errors_of(tmp_path, f"services:\n  web:\n    command: [x]\n    healthcheck: {check}\n")
    assert errors == [f"kepler.yaml: services.web.healthcheck.{message}".replace("/etc/hosts",
                                                                               str(tmp_path / "hosts"))]


@pytest.mark.parametrize("target", ["http://localhost/", "http://[::1]:8080/x", "tcp: '10.1.2.3:80'",
                                    "http://db.internal:8080/health"])
def test_http_and_tcp_targets_without_dns(tmp_path, monkeypatch, target):
    (tmp_path / "hosts").write_text("127.0.0.1 localhost\n10.0.0.7  db.internal  # ours\n")
    monkeypatch.setattr("keplerd.model.endpoints.HOSTS_FILE", str(tmp_path / "hosts"))
    check_text = target if target.startswith("tcp") else f"http: '{target}'"
    path = tmp_path / "kepler.yaml"
    path.write_text(f"services:\n  web:\n    command: ['true']\n    healthcheck: {{{check_text}}}\n")
    assert check(str(path), {}, "/") is None


@pytest.mark.parametrize("service, message", [
    ("    restart: {policy: always, on_unhealthy: true}\n", "restart.on_unhealthy: needs a healthcheck"),
    ("    restart: {on_unhealthy: true}\n    healthcheck: {test: 'true'}\n",
     "restart.on_unhealthy: not allowed with policy 'no' (set policy: always or on-failure)"),
    ("    restart: {policy: always, on_unhealthy: true}\n    healthcheck: {test: ['NONE']}\n",
     "restart.on_unhealthy: needs a healthcheck"),
])
def test_on_unhealthy_needs_a_check_and_a_policy(tmp_path, service, message):
    errors = errors_of(tmp_path, f"services:\n  web:\n    command: [x]\n{service}")
    assert errors == [f"kepler.yaml: services.web.{message}"]


def test_type_errors_of_plain_fields(tmp_path):
    errors = errors_of(tmp_path, """\
        services:
          web:
            command: [x]
            wait: "yes"
            sys_env: keep
            user: [root]
            limits: {max_fds: -1}
        """)
    assert errors == [
        "kepler.yaml: services.web.sys_env: invalid value 'keep': expected one of clear, inherit",
        "kepler.yaml: services.web.user: Not a valid string.",
        "kepler.yaml: services.web.limits.max_fds: must be at least 0",
        "kepler.yaml: services.web.wait: Not a valid boolean.",
    ]


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    errors = errors_of(tmp_path, "services:\n  web:\n    command: [x]\n    user: a: b\n")
    assert len(errors) == 1
    assert errors[0].startswith("kepler.yaml:4:")
    assert "mapping values are not allowed" in errors[0]


def test_display_name_is_used_in_messages(tmp_path):
    path = tmp_path / "kepler.yaml"
    path.write_text("services:\n  web: {command: [x], foo: 1}\n")
    with pytest.raises(ConfigError) as caught:
        check(str(path), {}, "/", display_name="./app/kepler.yaml")
    assert caught.value.errors == ["./app/kepler.yaml: services.web.foo: unknown key"]


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="kepler.yaml: cannot read: No such file"):
        check(str(tmp_path / "kepler.yaml"), {}, "/")


def test_all_errors_are_reported_together(tmp_path):
    (tmp_path / "app.env").write_text("oops\n")
    errors = errors_of(tmp_path, """\
        colour: blue
        kepler: {timeout: forever}
        services:
          web:
            command: [x, 1]
            env_file: app.env
            working_dir: ${UNTERMINATED
            depends_on: [ghost, api]
          api:
            command: [x]
            depends_on: [web]
            stop_signal: NOPE
        """)
    assert errors == [
        "app.env:1: invalid line: expected KEY=value",
        "kepler.yaml: services.web.working_dir: unterminated '${' in '${UNTERMINATED'",
        "kepler.yaml: colour: unknown key",
        "kepler.yaml: kepler.timeout: invalid duration 'forever'",
        "kepler.yaml: services.web.command.1: Not a valid string.",
        "kepler.yaml: services.api.stop_signal: invalid signal 'NOPE'",
        "kepler.yaml: services.web.depends_on.ghost: undefined service 'ghost'",
        "kepler.yaml: services: dependency cycle: web -> api -> web",
    ]


def test_a_failed_lua_chunk_is_reported_once(tmp_path):
    errors = errors_of(tmp_path, """\
        services:
          web: !lua error("no web today")
          api:
            command: [x]
            environment:
              A: !lua_file a.lua
        """)
    assert errors == [
        "kepler.yaml: services.web: lua:1: no web today",
        "kepler.yaml: services.api.environment.A: cannot read Lua file a.lua: No such file or directory",
    ]


SCHEMAS = [
    schema.TopSchema, schema.KeplerSchema, schema.ServiceSchema, schema.HookSchema, schema.HealthcheckSchema,
    schema.RestartSchema, schema.EdgeSchema, schema.LogsSchema, schema.RetentionSchema, schema.StoreSchema,
    schema.LimitsSchema, schema.GlobalHooksSchema, schema.ServiceHooksSchema,
]


@pytest.mark.parametrize("schema_class", SCHEMAS, ids=lambda cls: cls.__name__)
def test_every_key_is_described_and_in_the_man_page(schema_class):
    man = (pathlib.Path(__file__).parents[2] / "man" / "kepler.yaml.5").read_text()
    for name, field in schema_class().fields.items():
        assert field.metadata.get("description"), f"{schema_class.__name__}.{name} has no description"
        assert re.search(rf"\b{name}\b", man), f"{name} is not documented in kepler.yaml(5)"


def test_every_condition_is_in_the_man_page():
    man = (pathlib.Path(__file__).parents[2] / "man" / "kepler.yaml.5").read_text()
    assert all(re.search(rf"^\.B {condition}$", man, re.M) for condition in CONDITIONS)
