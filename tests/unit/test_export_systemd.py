"""Export to systemd, field by field; every unit passes systemd-analyze verify; systemd reads back argv and env."""

import os

import pytest

from keplerd.cli.export import local_systemd_version
from keplerd.export import Options, export
from keplerd.export.systemd_syntax import environment_assignment, exec_line, timespan
from tests.unit.export_support import (StubPrograms, bake_text, dumped_command, dumped_environment,
                                       systemd_analyze_verify, systemd_dump, values, write_units)


def systemd(snapshot, version=252, **options):
    return export(snapshot, "systemd", Options(prefix="shop", systemd_version=version, **options))


def unit(result, name):
    return result.files[f"shop-{name}.service"]


def warned(result):
    return {path for path, _ in result.warnings}


def test_one_unit_per_service_and_a_target_that_wants_them_all(tmp_path):
    snapshot = bake_text(tmp_path, """
        services:
          web: {command: [/bin/sleep, "100"]}
          db: {command: [/bin/sleep, "100"]}
    """)
    result = systemd(snapshot)
    assert sorted(result.files) == ["shop-db.service", "shop-web.service", "shop.target"]
    assert values(result.files["shop.target"], "Unit", "Wants") == ["shop-db.service shop-web.service"]
    assert values(unit(result, "web"), "Unit", "PartOf") == ["shop.target"]
    assert values(unit(result, "web"), "Install", "WantedBy") == ["shop.target"]


def test_command_working_dir_user_group_and_environment(tmp_path):
    snapshot = bake_text(tmp_path, """
        services:
          web:
            command: [/bin/echo, "two words", "100%", "$HOME"]
            working_dir: /srv
            user: "1000:2000"
            environment: {B: "say \\"hi\\"", A: "x y"}
    """)
    text = unit(systemd(snapshot), "web")
    assert values(text, "Service", "ExecStart") == ['/bin/echo "two words" 100%% $$HOME']
    assert values(text, "Service", "WorkingDirectory") == ["/srv"]
    assert values(text, "Service", "User") == ["1000"]
    assert values(text, "Service", "Group") == ["2000"]
    assert values(text, "Service", "Environment") == ['"A=x y"', '"B=say \\"hi\\""']


def test_a_relative_program_is_made_absolute_from_the_working_dir(tmp_path):
    snapshot = bake_text(tmp_path, """
        services:
          web: {command: [./server, --port, "80"], working_dir: /srv/app}
    """)
    assert values(unit(systemd(snapshot), "web"), "Service", "ExecStart") == ["/srv/app/server --port 80"]


def test_a_bare_program_is_resolved_in_the_service_path_or_left_to_systemd(tmp_path):
    snapshot = bake_text(tmp_path, """
        services:
          web: {command: [sh, -c, "true"], environment: {PATH: /usr/bin:/bin}}
          gone: {command: [no-such-program-here]}
    """)
    result = systemd(snapshot, resolve=lambda name, path: "/usr/bin/sh" if name == "sh" else None)
    assert values(unit(result, "web"), "Service", "ExecStart") == ['/usr/bin/sh -c true']
    assert values(unit(result, "gone"), "Service", "ExecStart") == ["no-such-program-here"]


def test_dependencies_require_and_order_bind_on_restart_true(tmp_path):
    snapshot = bake_text(tmp_path, """
        services:
          db: {command: [/bin/sleep, "1"]}
          cache: {command: [/bin/sleep, "1"]}
          web:
            command: [/bin/sleep, "1"]
            depends_on:
              db: {condition: service_started, restart: true}
              cache: {condition: service_healthy}
    """)
    result = systemd(snapshot)
    text = unit(result, "web")
    assert values(text, "Unit", "Requires") == ["shop-cache.service"]
    assert values(text, "Unit", "BindsTo") == ["shop-db.service"]
    assert values(text, "Unit", "After") == ["shop-cache.service shop-db.service"]
    assert "services.web.depends_on.cache.condition" in warned(result)  # healthy: no health checks
    assert "services.web.depends_on.db.condition" not in warned(result)


def test_a_one_shot_awaited_to_completion_is_type_oneshot(tmp_path):
    snapshot = bake_text(tmp_path, """
        services:
          migrate: {command: [/bin/true], restart: always}
          web:
            command: [/bin/sleep, "1"]
            depends_on: {migrate: {condition: service_completed_successfully}}
    """)
    result = systemd(snapshot)
    assert values(unit(result, "migrate"), "Service", "Type") == ["oneshot"]
    assert values(unit(result, "migrate"), "Service", "TimeoutStartSec") == ["infinity"]
    assert values(unit(result, "migrate"), "Service", "Restart") == ["on-failure"]
    assert "services.migrate.restart.policy" in warned(result)
    assert values(unit(result, "web"), "Service", "Type") == ["exec"]


def test_deferred_conditions_are_dropped_with_a_warning(tmp_path):
    snapshot = bake_text(tmp_path, """
        services:
          db: {command: [/bin/sleep, "1"]}
          alert:
            command: [/bin/true]
            depends_on: {db: {condition: service_failed, exit_code: [1]}}
    """)
    result = systemd(snapshot)
    assert values(unit(result, "alert"), "Unit", "Requires") == []
    assert ("services.alert.depends_on.db",
            "service_failed: no systemd equivalent, dependency dropped") in result.warnings


def test_restart_policy_back_off_and_retries(tmp_path):
    snapshot = bake_text(tmp_path, """
        services:
          web:
            command: [/bin/sleep, "1"]
            restart: {policy: on-failure, backoff: 1s, max_backoff: 16s, max_retries: 4}
    """)
    new = unit(systemd(snapshot, version=254), "web")
    assert values(new, "Service", "Restart") == ["on-failure"]
    assert values(new, "Service", "RestartSec") == ["1s"]
    assert values(new, "Service", "RestartSteps") == ["4"]
    assert values(new, "Service", "RestartMaxDelaySec") == ["16s"]
    assert values(new, "Unit", "StartLimitBurst") == ["5"]
    assert values(new, "Unit", "StartLimitIntervalSec") == [timespan(5 * (10 + 16))]
    old = systemd(snapshot, version=253)
    assert values(unit(old, "web"), "Service", "RestartSteps") == []
    assert "services.web.restart.max_backoff" in warned(old)


def test_unlimited_retries_turn_the_start_rate_limit_off(tmp_path):
    snapshot = bake_text(tmp_path, "services:\n  web: {command: [/bin/true], restart: always}\n")
    assert values(unit(systemd(snapshot), "web"), "Unit", "StartLimitIntervalSec") == ["0"]


def test_limits_stop_settings_and_unstored_output(tmp_path):
    snapshot = bake_text(tmp_path, """
        services:
          web:
            command: [/bin/sleep, "1"]
            limits: {memory: 1G, cpu_time: 90s, max_fds: 4096}
            stop_signal: SIGINT
            stop_grace_period: 1500ms
            logs: {store: {stdout: false}}
    """)
    text = unit(systemd(snapshot), "web")
    assert values(text, "Service", "LimitAS") == [str(1 << 30)]
    assert values(text, "Service", "LimitCPU") == ["90"]
    assert values(text, "Service", "LimitNOFILE") == ["4096"]
    assert values(text, "Service", "KillSignal") == ["SIGINT"]
    assert values(text, "Service", "KillMode") == ["mixed"]
    assert values(text, "Service", "TimeoutStopSec") == ["1500ms"]
    assert values(text, "Service", "StandardOutput") == ["null"]
    assert values(text, "Service", "StandardError") == []


def test_new_keys_from_the_snapshot_notify_replicas_and_cgroup_limits(tmp_path):
    snapshot = bake_text(tmp_path, "services:\n  web: {command: [/bin/sleep, '1']}\n  api: {command: [/bin/true]}\n")
    web = snapshot["services"]["web"]
    web.update(notify=True, replicas=3)
    web["limits"].update(memory_max=256 << 20, cpus=0.5, pids_max=64)
    snapshot["services"]["api"]["depends_on"] = {"web": {"condition": "service_started", "timeout": None,
                                                         "restart": False, "exit_code": None, "wait": None}}
    result = systemd(snapshot)
    assert "shop-web@.service" in result.files and "shop-web.service" not in result.files
    text = result.files["shop-web@.service"]
    assert values(text, "Service", "Type") == ["notify"]
    assert values(text, "Service", "TimeoutStartSec") == ["infinity"]  # no start_period: READY=1 for ever
    assert values(text, "Service", "MemoryMax") == [str(256 << 20)]
    assert values(text, "Service", "CPUQuota") == ["50%"]
    assert values(text, "Service", "TasksMax") == ["64"]
    assert '"KEPLER_REPLICA=%i" "KEPLER_REPLICAS=3"' in values(text, "Service", "Environment")
    instances = "shop-web@1.service shop-web@2.service shop-web@3.service"
    assert values(unit(result, "api"), "Unit", "Requires") == [instances]
    assert values(result.files["shop.target"], "Unit", "Wants") == [f"shop-api.service {instances}"]


def test_hooks_become_exec_lines_with_their_own_variables(tmp_path):
    snapshot = bake_text(tmp_path, """
        services:
          web:
            command: [/bin/sleep, "1"]
            environment: {A: "1"}
            hooks:
              pre_start: {command: [/bin/echo, pre], environment: {EXTRA: "x y"}}
              post_start: {run: "echo post"}
              pre_stop: {command: [/bin/echo, stopping]}
              post_stop: {command: [/bin/echo, stopped]}
              post_exit: {command: [/bin/echo, exited]}
              on_init: {command: [/bin/echo, init]}
    """)
    result = systemd(snapshot)
    text = unit(result, "web")
    assert values(text, "Service", "ExecStartPre") == ['/usr/bin/env "EXTRA=x y" /bin/echo pre']
    assert values(text, "Service", "ExecStartPost") == ['-/bin/sh -c "echo post"']
    assert values(text, "Service", "ExecStop") == ["/bin/echo stopping"]
    assert values(text, "Service", "ExecStopPost") == ["-/bin/echo stopped"]
    assert {"services.web.hooks.post_exit", "services.web.hooks.on_init"} <= warned(result)


def test_export_is_deterministic(tmp_path):
    text = """
        services:
          b: {command: [/bin/true], environment: {Z: "1", A: "2"}}
          a: {command: [/bin/true], depends_on: [b]}
    """
    first = systemd(bake_text(tmp_path, text))
    second = systemd(bake_text(tmp_path, text))
    assert first.files == second.files and first.sorted_warnings() == second.sorted_warnings()


@pytest.mark.parametrize("word", ["plain", "two words", "", "100%", "%n", "$HOME", "${X}", "$$", "a;b", ";",
                                  'say "hi"', "it's", "back\\slash", "tab\there", "-dash", "ünïcode"])
def test_quoting_of_words_and_assignments(word):
    line = exec_line(["/bin/echo", word])
    assert line.startswith("/bin/echo ")
    assert environment_assignment("K", word).startswith('"K=')


def test_systemd_parses_back_the_argv_and_environment_of_a_unit(tmp_path, world_readable_dir):
    tricky = ["two words", "", "100%", "%n", "$HOME", "${X}", "$$", ";", 'say "hi"', "it's", "back\\slash",
              "tab\there", "ünïcode", "-dash"]
    env = {f"V{index}": word for index, word in enumerate(tricky)}
    tricky += ["new\nline", "\x01control"]  # in argv only: the dump prints env values raw
    snapshot = bake_text(tmp_path, "services:\n  echo: {command: [/bin/echo]}\n")
    service = snapshot["services"]["echo"]
    service["command"] = ["/bin/echo", *tricky]
    service["env"] = env
    service["hooks"] = {"pre_start": {"command": ["/bin/echo", *tricky], "run": None, "user": None, "group": None,
                                      "working_dir": service["working_dir"], "env": {**env, "EXTRA": "a b%$"},
                                      "limits": service["limits"], "timeout": None}}
    result = systemd(snapshot)
    write_units(world_readable_dir, result.files)
    dumped = systemd_dump(world_readable_dir, "shop-echo.service")
    assert dumped_command(dumped) == ["/bin/echo", *tricky]
    assert dumped_command(dumped, "ExecStartPre") == ["/usr/bin/env", "EXTRA=a b%$", "/bin/echo", *tricky]
    assert dumped_environment(dumped) == env


def test_every_unit_of_the_readme_example_passes_systemd_analyze_verify(tmp_path, world_readable_dir):
    snapshot = bake_text(tmp_path, README_EXAMPLE, files={"app.env": "SECRET=s3cr%t\n"},
                         sys_env={"HOME": "/root", "LOG_LEVEL": "debug"})
    result = systemd(snapshot, resolve=StubPrograms(world_readable_dir))
    os.makedirs(os.path.join(tmp_path, "app"))
    StubPrograms(os.path.join(tmp_path, "app"))("server", "")  # ./server of the example
    write_units(world_readable_dir, result.files)
    verified = systemd_analyze_verify(world_readable_dir, sorted(result.files))
    assert verified.returncode == 0 and verified.stderr == "", verified.stderr
    web = unit(result, "web")
    assert values(web, "Unit", "BindsTo") == ["shop-db.service"]
    assert '"LOG_LEVEL=debug"' in values(web, "Service", "Environment")
    assert '"SECRET=s3cr%%t"' in values(web, "Service", "Environment")
    assert values(web, "Service", "ExecStartPre") == ["/bin/sh -c ./migrate"]
    db_start, = values(unit(result, "db"), "Service", "ExecStart")
    assert db_start.startswith("/") and db_start.endswith("/postgres -D /var/lib/pg")


README_EXAMPLE = """
    kepler:
      timeout: 30s
      hooks:
        on_init: {run: "echo first start after a bake"}
    services:
      db:
        command: ["postgres", "-D", "/var/lib/pg"]
        user: postgres
        healthcheck:
          test: ["pg_isready"]
          interval: 2s
          retries: 5
      web:
        command: ["./server", "--port", "8080"]
        working_dir: ./app
        env_file: app.env
        environment:
          - DATABASE_URL=postgres://db/app
          - LOG_LEVEL=${LOG_LEVEL:-info}
        depends_on:
          db:
            condition: service_healthy
            restart: true
        restart:
          policy: on-failure
          max_retries: 10
        hooks:
          pre_start: {run: "./migrate"}
"""


def test_the_example_stack_exports_to_units_that_pass_verify(world_readable_dir):
    from keplerd.config.bake import bake

    example = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "kepler.yaml")
    snapshot = bake(os.path.realpath(example), {"HOME": "/root", "USER": "ann"}, "/root").snapshot
    result = systemd(snapshot, resolve=StubPrograms(world_readable_dir))
    assert sorted(result.files) == ["shop-flaky.service", "shop-ticker.service", "shop-web.service", "shop.target"]
    write_units(world_readable_dir, result.files)
    verified = systemd_analyze_verify(world_readable_dir, sorted(result.files))
    assert verified.returncode == 0 and verified.stderr == "", verified.stderr
    assert values(unit(result, "ticker"), "Service", "Environment") == ['"GREETING=ann"']
    assert values(unit(result, "flaky"), "Unit", "StartLimitBurst") == ["4"]


def test_a_notify_service_waits_for_ready_as_long_as_its_start_period(tmp_path):
    snapshot = bake_text(tmp_path, "services:\n  web: {command: [/bin/true], healthcheck: {test: [/bin/true], "
                                   "start_period: 45s}}\n")
    snapshot["services"]["web"]["notify"] = True
    assert values(unit(systemd(snapshot), "web"), "Service", "TimeoutStartSec") == ["45s"]


def test_templates_and_their_instances_pass_verify(tmp_path, world_readable_dir):
    snapshot = bake_text(tmp_path, """
        services:
          web: {command: [/bin/sleep, "100"], restart: always}
          api: {command: [/bin/sleep, "100"], depends_on: {web: {condition: service_started, restart: true}}}
    """)
    snapshot["services"]["web"].update(replicas=2, notify=True)
    result = systemd(snapshot, version=local_systemd_version())  # what this systemd-analyze knows
    write_units(world_readable_dir, result.files)
    units = ["shop-web@.service", "shop-web@1.service", "shop-web@2.service", "shop-api.service", "shop.target"]
    verified = systemd_analyze_verify(world_readable_dir, units)
    assert verified.returncode == 0 and verified.stderr == "", verified.stderr
    instance = systemd_dump(world_readable_dir, "shop-web@2.service")
    assert dumped_environment(instance) == {"KEPLER_REPLICA": "2", "KEPLER_REPLICAS": "2"}
    assert "BindsTo: shop-web@2.service (origin-file)" in systemd_dump(world_readable_dir, "shop-api.service")
