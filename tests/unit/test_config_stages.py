"""Expansion stages: which variables each field sees (SPEC §5)."""

import textwrap

import pytest

from keplerd.config.bake import bake
from keplerd.config.errors import ConfigError

HOME = "/home/ann"


WEB = "services:\n  web:\n    command: [x]\n"


def bake_text(tmp_path, text, env=None, files=None):
    for name, content in (files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    path = tmp_path / "kepler.yaml"
    path.write_text(textwrap.dedent(text))
    return bake(str(path), env or {}, HOME).snapshot


def errors_of(tmp_path, text, env=None, files=None):
    with pytest.raises(ConfigError) as caught:
        bake_text(tmp_path, text, env, files)
    return caught.value.errors


def test_stage1_env_file_path_sees_the_system_env(tmp_path):
    snapshot = bake_text(
        tmp_path,
        "services:\n  web:\n    command: [x]\n    env_file: ${CONF}/app.env\n",
        env={"CONF": "conf"},
        files={"conf/app.env": "A=1\n"},
    )
    assert snapshot["services"]["web"]["env_file"] == str(tmp_path / "conf" / "app.env")
    assert snapshot["services"]["web"]["env"] == {"A": "1"}


def test_stage1_env_file_path_does_not_see_environment(tmp_path):
    errors = errors_of(tmp_path, """\
        services:
          web:
            command: [x]
            environment: [CONF=conf]
            env_file: ${CONF:-nowhere}/app.env
        """, files={"conf/app.env": "A=1\n"})
    assert errors == [
        f"kepler.yaml: services.web.env_file: cannot read env file {tmp_path}/nowhere/app.env: "
        "No such file or directory"
    ]


def test_stage2_environment_sees_system_env_and_env_file(tmp_path):
    snapshot = bake_text(tmp_path, """\
        services:
          web:
            command: [x]
            env_file: app.env
            environment:
              - BOTH=${SYS}+${FILE}
              - FIRST=one
              - LATER=${FIRST:-not visible}
        """, env={"SYS": "s"}, files={"app.env": "FILE=f\n"})
    environment = snapshot["services"]["web"]["environment"]
    assert environment == {"BOTH": "s+f", "FIRST": "one", "LATER": "not visible"}


def test_stage2_env_file_overrides_system_env_for_expansion(tmp_path):
    snapshot = bake_text(
        tmp_path,
        "services:\n  web:\n    command: [x]\n    env_file: app.env\n    environment: {X: '${X}'}\n",
        env={"X": "system"}, files={"app.env": "X=file\n"},
    )
    assert snapshot["services"]["web"]["environment"] == {"X": "file"}


def test_environment_keys_are_not_expanded(tmp_path):
    errors = errors_of(tmp_path, WEB + "    environment: {'${K}': v}\n", env={"K": "k"})
    assert errors == [
        "kepler.yaml: services.web.environment.${K}: invalid entry: expected KEY=value with KEY like NAME_1"
    ]


def test_stage3_fields_see_system_env_file_and_environment(tmp_path):
    snapshot = bake_text(tmp_path, """\
        services:
          web:
            command: [x]
            env_file: app.env
            environment: [ENV=e, X=from-environment]
            working_dir: /srv/${SYS}/${FILE}/${ENV}/${X}
            user: u-${ENV}
            group: g-${FILE}
            limits: {memory: "${MEM}", cpu_time: "${CPU}", max_fds: "${FDS}", cpus: "${FDS}", pids_max: "${FDS}",
                     memory_max: "${MEM}"}
            restart: {policy: always, watch: ["${ENV}/**/*.py", "${SYS}.cfg"]}
        """,
        env={"SYS": "s", "X": "from-system", "FDS": "64"},
        files={"app.env": "FILE=f\nX=from-file\nMEM=1K\nCPU=2m\n"},
    )
    web = snapshot["services"]["web"]
    assert web["working_dir"] == "/srv/s/f/e/from-environment"
    assert (web["user"], web["group"]) == ("u-e", "g-f")
    assert web["limits"] == {"memory": 1024, "cpu_time": 120, "max_fds": 64, "cpus": 64.0, "pids_max": 64,
                            "memory_max": 1024}
    assert web["restart"]["watch"] == ["e/**/*.py", "s.cfg"]


def test_stages_see_the_system_env_even_when_the_service_clears_it(tmp_path):
    snapshot = bake_text(
        tmp_path, "services:\n  web:\n    command: [x]\n    environment: ['P=${PORT}']\n", env={"PORT": "80"}
    )
    assert snapshot["services"]["web"]["sys_env"] == "clear"
    assert snapshot["services"]["web"]["env"] == {"P": "80"}


def test_command_run_and_healthcheck_test_are_never_expanded(tmp_path):
    snapshot = bake_text(tmp_path, """\
        kepler:
          hooks:
            pre_start: {run: "echo ${A} $$B ~"}
        services:
          web:
            command: ["${A}", "$$B", "~/x"]
            environment: [A=1]
            healthcheck: {test: ["CMD", "${A}"]}
            hooks:
              post_start: {command: ["${A}", "~"]}
              pre_stop: {run: "kill ${A}"}
        """, env={"A": "sys"})
    web = snapshot["services"]["web"]
    assert web["command"] == ["${A}", "$$B", "~/x"]
    assert web["healthcheck"]["test"] == ["${A}"]
    assert web["hooks"]["post_start"]["command"] == ["${A}", "~"]
    assert web["hooks"]["pre_stop"]["command"] == ["/bin/sh", "-c", "kill ${A}"]
    assert snapshot["kepler"]["hooks"]["pre_start"]["run"] == "echo ${A} $$B ~"


def test_other_keys_are_not_expanded(tmp_path):
    errors = errors_of(tmp_path, WEB + "    stop_signal: ${SIG}\n", env={"SIG": "TERM"})
    assert errors == ["kepler.yaml: services.web.stop_signal: invalid signal '${SIG}'"]


def test_home_and_dollar_escape_in_working_dir(tmp_path):
    snapshot = bake_text(tmp_path, """\
        services:
          a: {command: [x], working_dir: ~/app}
          b: {command: [x], working_dir: /x/$$y}
        """)
    assert snapshot["services"]["a"]["working_dir"] == f"{HOME}/app"
    assert snapshot["services"]["b"]["working_dir"] == "/x/$y"


def test_service_hook_stages_build_on_the_service_variables(tmp_path):
    snapshot = bake_text(tmp_path, """\
        services:
          web:
            command: [x]
            environment: [DIR=hooks, SVC=web]
            hooks:
              pre_start:
                run: migrate
                env_file: ${DIR}/hook.env
                environment: ["H=${SVC}-${FROMHOOKFILE}", "Z=${H:-unset}"]
                working_dir: /w/${H}
                user: ${SVC}-${FROMHOOKFILE}
        """, files={"hooks/hook.env": "FROMHOOKFILE=hf\n"})
    hook = snapshot["services"]["web"]["hooks"]["pre_start"]
    assert hook["env"] == {"DIR": "hooks", "SVC": "web", "FROMHOOKFILE": "hf", "H": "web-hf", "Z": "unset"}
    assert hook["working_dir"] == "/w/web-hf"
    assert hook["user"] == "web-hf"


def test_global_hook_sees_only_the_system_env_and_its_own(tmp_path):
    snapshot = bake_text(tmp_path, """\
        kepler:
          hooks:
            on_init:
              run: setup
              env_file: g.env
              environment: ["G=${SYS}-${GFILE}-${SVC:-none}"]
              working_dir: ${G}
        services:
          web: {command: [x], environment: [SVC=web]}
        """, env={"SYS": "s"}, files={"g.env": "GFILE=gf\n"})
    hook = snapshot["kepler"]["hooks"]["on_init"]
    assert hook["env"] == {"GFILE": "gf", "G": "s-gf-none"}
    assert hook["working_dir"] == str(tmp_path / "s-gf-none")


@pytest.mark.parametrize(
    ("environment", "path"),
    [("['A=${B']", "services.web.environment.0"), ("{A: '${1}'}", "services.web.environment.A")],
)
def test_expansion_errors_are_located(tmp_path, environment, path):
    errors = errors_of(tmp_path, f"services:\n  web:\n    command: [x]\n    environment: {environment}\n")
    assert len(errors) == 1 and errors[0].startswith(f"kepler.yaml: {path}: ")
