"""Lua templating at bake time: values, ctx at each stage, global, files, modules, errors (SPEC §6)."""

import os
import subprocess
import sys
import textwrap

import pytest

from keplerd.config.bake import bake
from keplerd.config.errors import ConfigError

HOME = "/home/ann"
SYS_ENV = {"SYS": "1", "PORT": "80"}

# Helpers available to every chunk: `keys(t)` lists the names in t, sorted.
KEYS = """\
lua: |
  function keys(t)
    local names = {}
    for name in pairs(t) do names[#names + 1] = name end
    table.sort(names)
    return table.concat(names, ",")
  end
"""


def write(tmp_path, text, files=None):
    for name, content in (files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(content))
    path = tmp_path / "kepler.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def bake_text(tmp_path, text, env=None, files=None, **options):
    return bake(write(tmp_path, text, files), SYS_ENV if env is None else env, HOME, **options).snapshot


def errors_of(tmp_path, text, env=None, files=None, **options):
    with pytest.raises(ConfigError) as caught:
        bake_text(tmp_path, text, env, files, **options)
    return caught.value.errors


def service(tmp_path, text, name="web", **kwargs):
    return bake_text(tmp_path, text, **kwargs)["services"][name]


# -- values -----------------------------------------------------------------------------


def test_chunk_values_become_config_values(tmp_path):
    web = service(tmp_path, """\
        services:
          web:
            command: !lua return {"echo", "a" .. 1}
            stop_grace_period: !lua return 2 + 3
            wait: !lua return false
            environment: !lua return {B = "2", A = 1, C = 1.5}
        """)
    assert web["command"] == ["echo", "a1"]
    assert web["stop_grace_period"] == 5.0
    assert web["wait"] is False
    assert web["env"] == {"A": "1", "B": "2", "C": "1.5"}


def test_nil_makes_the_key_absent(tmp_path):
    web = service(tmp_path, """\
        services:
          web:
            command: [echo, !lua return nil, b]
            working_dir: !lua return nil
            stop_signal: !lua return nil
        """)
    assert web["command"] == ["echo", "b"]
    assert web["working_dir"] == str(tmp_path)
    assert web["stop_signal"] == 15


def test_a_whole_service_and_the_whole_services_map_can_be_lua(tmp_path):
    snapshot = bake_text(tmp_path, """\
        services: !lua |
          local result = {}
          for _, name in ipairs({"a", "b"}) do
            result[name] = {command = {"echo", name}}
          end
          return result
        """)
    assert {name: s["command"] for name, s in snapshot["services"].items()} == {"a": ["echo", "a"], "b": ["echo", "b"]}


def test_a_service_entry_chunk_sees_its_name(tmp_path):
    web = service(tmp_path, "services:\n  web: !lua return {command = {'echo', ctx.service_name}}\n")
    assert web["command"] == ["echo", "web"]


def test_lua_values_are_validated_like_yaml(tmp_path):
    errors = errors_of(tmp_path, """\
        services:
          web:
            command: !lua return {"echo", 3}
            stop_signal: !lua return "SIGNOPE"
        """)
    assert errors == [
        "kepler.yaml: services.web.command.1: Not a valid string.",
        "kepler.yaml: services.web.stop_signal: invalid signal 'SIGNOPE'",
    ]


def test_lua_strings_are_expanded_like_yaml(tmp_path):
    web = service(tmp_path, """\
        services:
          web:
            command: [x]
            working_dir: !lua return "${SYS}/dir"
        """)
    assert web["working_dir"] == str(tmp_path / "1" / "dir")


@pytest.mark.parametrize("chunk, where, problem", [
    ("return function() end", "", "a Lua function cannot be a config value"),
    ('return {"a", function() end}', ".1", "a Lua function cannot be a config value"),
    ('return {1, nil, 3}', "", "Lua list has holes (keys must be 1..n)"),
    ('return {a = 1, "b"}', "", "Lua table mixes list items and map keys"),
    ('return {[1.5] = "x"}', "", "Lua table has the key 1.5 (a list has keys 1..n, a map string keys)"),
    ('local t = {} t.again = t return t', ".again", "Lua table contains itself"),
    ('return {0/0}', ".0", "Lua number is not finite"),
    ('return {"\\255"}', ".0", "Lua string is not valid UTF-8"),
    ('return {"a\\0b"}', ".0", "Lua string contains a NUL character"),
])
def test_values_that_cannot_be_config_values_are_located_errors(tmp_path, chunk, where, problem):
    errors = errors_of(tmp_path, f"services:\n  web:\n    command: !lua '{chunk}'\n")
    assert errors == [f"kepler.yaml: services.web.command{where}: {problem}"]


def test_odd_text_in_the_environment_reaches_lua_and_is_refused_as_a_value(tmp_path):
    web = service(tmp_path, "services:\n  web:\n    command: !lua return {tostring(#ctx.env.ODD)}\n",
                  env={"ODD": "caf\udce9 \ud800"})
    assert web["command"] == ["10"]  # each surrogate passed on as three bytes
    errors = errors_of(tmp_path, "services:\n  web:\n    command: !lua return {ctx.env.ODD}\n",
                       env={"ODD": "caf\udce9 \ud800"})
    assert errors == ["kepler.yaml: services.web.command.0: Lua string is not valid UTF-8"]


def test_an_empty_table_is_an_empty_list_and_map_keys_are_sorted(tmp_path):
    web = service(tmp_path, """\
        services:
          web:
            command: [x]
            depends_on: !lua return {}
            restart: !lua return {watch = {}, policy = "always"}
        """)
    assert web["depends_on"] == {}
    assert web["restart"]["watch"] == []


# -- ctx at each stage ---------------------------------------------------------------------


RECORD = 'global.seen = keys(ctx.env) .. "|" .. keys(ctx.sys_env) .. "|" .. keys(ctx.env_file)'


def visible_at(tmp_path, env_file="app.env", environment="[FROM_ENVIRONMENT=1]", working_dir="."):
    """Bake a service where one field records what its chunk sees in global.seen; return that."""
    web = service(tmp_path, KEYS + f"""\
services:
  web:
    env_file: {env_file}
    environment: {environment}
    working_dir: {working_dir}
    command: !lua return {{"x", global.seen}}
""", files={"app.env": "FROM_ENV_FILE=1\n"})
    return web["command"][1]


def test_stage1_env_file_chunk_sees_only_the_system_env(tmp_path):
    seen = visible_at(tmp_path, env_file=f"!lua '{RECORD}; return \"app.env\"'")
    assert seen == "PORT,SYS|PORT,SYS|"


def test_stage2_environment_chunk_sees_system_env_and_env_file(tmp_path):
    seen = visible_at(tmp_path, environment=f"!lua '{RECORD}; return {{\"FROM_ENVIRONMENT=1\"}}'")
    assert seen == "FROM_ENV_FILE,PORT,SYS|PORT,SYS|FROM_ENV_FILE"


def test_stage2_a_chunk_inside_environment_sees_the_same(tmp_path):
    seen = visible_at(tmp_path, environment=f"[FROM_ENVIRONMENT=1, !lua '{RECORD}; return \"OTHER=2\"']")
    assert seen == "FROM_ENV_FILE,PORT,SYS|PORT,SYS|FROM_ENV_FILE"


def test_stage3_other_fields_see_system_env_env_file_and_environment(tmp_path):
    seen = visible_at(tmp_path, working_dir=f"!lua '{RECORD}; return \".\"'")
    assert seen == "FROM_ENVIRONMENT,FROM_ENV_FILE,PORT,SYS|PORT,SYS|FROM_ENV_FILE"


def test_environment_overrides_env_file_and_system_env_in_ctx_env(tmp_path):
    web = service(tmp_path, """\
        services:
          web:
            env_file: app.env
            environment: [PORT=8080]
            command: !lua return {"x", ctx.env.PORT, ctx.sys_env.PORT, ctx.env_file.PORT}
        """, files={"app.env": "PORT=9000\n"})
    assert web["command"] == ["x", "8080", "80", "9000"]


def test_global_block_ctx_has_the_system_env_and_no_names(tmp_path):
    web = service(tmp_path, KEYS + """\
  global.seen = keys(ctx.env) .. "|" .. keys(ctx.env_file) .. "|" .. tostring(ctx.service_name)
    .. "|" .. tostring(ctx.hook_name)
services:
  web:
    command: !lua return {"x", global.seen}
""")
    assert web["command"] == ["x", "PORT,SYS||nil|nil"]


def test_service_chunks_know_their_service_and_hook(tmp_path):
    snapshot = bake_text(tmp_path, """\
        kepler:
          hooks:
            pre_start:
              run: !lua return "echo " .. tostring(ctx.service_name) .. " " .. ctx.hook_name
        services:
          web:
            command: !lua return {"x", ctx.service_name, tostring(ctx.hook_name)}
            hooks:
              post_start:
                command: !lua return {"x", ctx.service_name, ctx.hook_name}
        """)
    web = snapshot["services"]["web"]
    assert web["command"] == ["x", "web", "nil"]
    assert web["hooks"]["post_start"]["command"] == ["x", "web", "post_start"]
    assert snapshot["kepler"]["hooks"]["pre_start"]["run"] == "echo nil pre_start"


def test_hook_chunks_see_the_service_variables_and_their_own(tmp_path):
    web = service(tmp_path, """\
        services:
          web:
            command: [x]
            environment: [SERVICE=1]
            hooks:
              pre_start:
                environment: [HOOK=1]
                run: !lua return "echo " .. ctx.env.SERVICE .. ctx.env.HOOK .. ctx.env.SYS
        """)
    assert web["hooks"]["pre_start"]["run"] == "echo 111"


# -- global, functions, isolation ------------------------------------------------------------


def test_global_is_shared_across_services_in_file_order(tmp_path):
    snapshot = bake_text(tmp_path, """\
        lua: |
          global.order = {}
          function visit(what)
            global.order[#global.order + 1] = what
            return what
          end
        services:
          b:
            command: !lua return {visit("b.command")}
            env_file: !lua visit("b.env_file")
            environment: !lua visit("b.environment")
          a:
            working_dir: !lua visit("a.working_dir")
            command: !lua return {"x", table.unpack(global.order)}
        """)
    assert snapshot["services"]["a"]["command"] == [
        "x", "b.env_file", "b.environment", "b.command", "a.working_dir"]


def test_functions_from_the_lua_block_see_the_calling_chunks_ctx(tmp_path):
    snapshot = bake_text(tmp_path, """\
        lua: |
          function url(path)
            return "http://localhost:" .. ctx.env.PORT .. path
          end
        services:
          web:
            environment: [PORT=8080]
            command: !lua return {"curl", url("/web")}
          api:
            environment: [PORT=9090]
            command: !lua return {"curl", url("/api")}
        """)
    assert snapshot["services"]["web"]["command"] == ["curl", "http://localhost:8080/web"]
    assert snapshot["services"]["api"]["command"] == ["curl", "http://localhost:9090/api"]


def test_a_fields_own_globals_stay_in_that_field(tmp_path):
    web = service(tmp_path, """\
        services:
          web:
            working_dir: !lua |
              leaked = "yes"
              return "."
            command: !lua return {"x", tostring(leaked)}
        """)
    assert web["command"] == ["x", "nil"]


def test_a_yaml_alias_of_a_chunk_is_evaluated_for_each_service(tmp_path):
    snapshot = bake_text(tmp_path, """\
        services:
          a:
            command: &named !lua return {"echo", ctx.service_name}
          b:
            command: *named
        """)
    assert snapshot["services"]["a"]["command"] == ["echo", "a"]
    assert snapshot["services"]["b"]["command"] == ["echo", "b"]


# -- files and modules ---------------------------------------------------------------------


def test_lua_file_is_read_relative_to_the_config_dir(tmp_path):
    web = service(tmp_path, """\
        services:
          web:
            command: !lua_file gen/command.lua
        """, files={"gen/command.lua": 'return {"echo", ctx.service_name}\n'})
    assert web["command"] == ["echo", "web"]


def test_the_lua_block_can_be_a_file(tmp_path):
    web = service(tmp_path, """\
        lua: !lua_file lib.lua
        services:
          web:
            command: !lua return {greet()}
        """, files={"lib.lua": 'function greet() return "hi" end\n'})
    assert web["command"] == ["hi"]


def test_a_missing_lua_file_is_a_located_error(tmp_path):
    errors = errors_of(tmp_path, "services:\n  web:\n    command: !lua_file nope.lua\n")
    assert errors == ["kepler.yaml: services.web.command: cannot read Lua file nope.lua: No such file or directory"]


def test_require_loads_a_sibling_module_once(tmp_path):
    snapshot = bake_text(tmp_path, """\
        lua: |
          ports = require("ports")
        services:
          web:
            command: !lua return {"x", tostring(require("ports").web), tostring(require("lib.util").loads)}
        """, files={
        "ports.lua": """\
            global.loads = (global.loads or 0) + 1
            return {web = 8080}
            """,
        "lib/util.lua": "return {loads = global.loads}\n",
    })
    assert snapshot["services"]["web"]["command"] == ["x", "8080", "1"]


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/b", "..", "x.lua.", ""])
def test_require_refuses_names_outside_the_config_dir(tmp_path, name):
    (tmp_path.parent / "x.lua").write_text("return 1\n")
    errors = errors_of(tmp_path, f"services:\n  web:\n    command: !lua return {{require('{name}')}}\n")
    assert errors == [f"kepler.yaml: services.web.command: lua:1: require: invalid module name '{name}' "
                      "(modules are files of the config directory: 'util' loads util.lua)"]


def test_require_refuses_a_symlink_out_of_the_config_dir(tmp_path):
    config_dir = tmp_path / "app"
    config_dir.mkdir()
    (tmp_path / "secret.lua").write_text("return 1\n")
    os.symlink(tmp_path / "secret.lua", config_dir / "secret.lua")
    errors = errors_of(config_dir, "services:\n  web:\n    command: !lua return {require('secret')}\n")
    assert errors == ["kepler.yaml: services.web.command: lua:1: require: module 'secret' is outside the config "
                      "directory"]


def test_require_does_not_search_system_paths(tmp_path):
    errors = errors_of(tmp_path, "services:\n  web:\n    command: !lua return {require('string')}\n")
    assert errors == ["kepler.yaml: services.web.command: lua:1: require: cannot read module 'string' (string.lua): "
                      "No such file or directory"]


# -- errors ----------------------------------------------------------------------------------


def test_lua_errors_name_the_file_the_key_and_the_line(tmp_path):
    errors = errors_of(tmp_path, """\
        services:
          web:
            command: !lua |
              local config = {}
              local port = 8080
              return {config.server.name, port}
        """)
    assert errors == ["kepler.yaml: services.web.command: lua:3: attempt to index a nil value (field 'server')"]


def test_errors_in_files_and_modules_name_them(tmp_path):
    errors = errors_of(tmp_path, """\
        services:
          web:
            command: !lua_file gen.lua
          db:
            command: !lua return require("broken")
        """, files={"gen.lua": "\nerror('no port')\n", "broken.lua": "return {\n"})
    assert errors == [
        "kepler.yaml: services.web.command: gen.lua:2: no port",
        "kepler.yaml: services.db.command: broken.lua:2: unexpected symbol near <eof>",
    ]


def test_syntax_errors_are_located(tmp_path):
    errors = errors_of(tmp_path, "services:\n  web:\n    command: !lua return {'x',\n")
    assert errors == ["kepler.yaml: services.web.command: lua:1: unexpected symbol near <eof>"]


def test_every_failing_chunk_is_reported_with_the_other_problems(tmp_path):
    errors = errors_of(tmp_path, """\
        services:
          web:
            command: !lua error("first")
            stop_signal: SIGNOPE
          db:
            command: !lua error("second")
        """)
    assert errors == [
        "kepler.yaml: services.web.command: lua:1: first",
        "kepler.yaml: services.db.command: lua:1: second",
        "kepler.yaml: services.web.stop_signal: invalid signal 'SIGNOPE'",
    ]


def test_a_failing_lua_block_stops_the_other_chunks(tmp_path):
    errors = errors_of(tmp_path, """\
        lua: |
          function helper() end
          error("setup failed")
        services:
          web:
            command: !lua return {helper()}
        """)
    assert errors == ["kepler.yaml: lua: lua:2: setup failed"]


def test_a_lua_block_that_is_not_text_is_an_error(tmp_path):
    errors = errors_of(tmp_path, "lua: [1]\nservices:\n  web:\n    command: [x]\n")
    assert errors == ["kepler.yaml: lua: must be Lua source text"]


# -- generated dependencies, watch and health checks ---------------------------------------


def test_lua_generated_depends_on_watch_and_healthcheck_bake_like_yaml(tmp_path):
    by_lua = bake_text(tmp_path, """\
        services:
          db:
            command: [db]
            healthcheck: !lua |
              return {test = {"CMD-SHELL", "pg_isready -p " .. ctx.env.PORT}, interval = "2s", retries = 5}
            environment: [PORT=5432]
          web:
            command: [web]
            depends_on: !lua |
              return {db = {condition = "service_healthy", timeout = "30s", restart = true}}
            restart: !lua |
              return {policy = "on-failure", watch = {"src/**/*.py", "${SYS}.conf"}}
          worker:
            command: [worker]
            depends_on: !lua return {"db", "web"}
        """)
    by_yaml = bake_text(tmp_path, """\
        services:
          db:
            command: [db]
            healthcheck:
              test: [CMD-SHELL, pg_isready -p 5432]
              interval: 2s
              retries: 5
            environment: [PORT=5432]
          web:
            command: [web]
            depends_on:
              db: {condition: service_healthy, timeout: 30s, restart: true}
            restart:
              policy: on-failure
              watch: ["src/**/*.py", "1.conf"]
          worker:
            command: [worker]
            depends_on: [db, web]
        """)
    assert by_lua["services"] == by_yaml["services"]
    assert by_lua["start_order"] == ["db", "web", "worker"]
    assert by_lua["services"]["web"]["restart"]["watch"] == ["src/**/*.py", "1.conf"]


def test_lua_generated_dependency_cycles_are_rejected(tmp_path):
    errors = errors_of(tmp_path, """\
        services:
          a:
            command: [a]
            depends_on: !lua return {"b"}
          b:
            command: [b]
            depends_on: !lua return {"a"}
        """)
    assert errors == ["kepler.yaml: services: dependency cycle: a -> b -> a"]


# -- the CLI ---------------------------------------------------------------------------------


def test_configs_without_lua_and_the_cli_never_import_lupa(tmp_path):
    path = write(tmp_path, "services:\n  web:\n    command: ['true']\n")
    code = ("import sys; import keplerd.cli.main; from keplerd.config.bake import check; "
            f"check({path!r}, {{}}, '/'); print('lupa' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
