"""The pure part of apply (SPEC §16): field-level diff of baked definitions, the plan, the merged snapshot."""

import copy
import os

import pytest

from keplerd.config.bake import bake
from keplerd.model.changes import PlanError, changed_fields, global_changes, merge, plan, plan_line


def service(**fields):
    """A baked service definition as the snapshot holds it (the fields apply compares)."""
    spec = {
        "command": ["sleep", "1000"], "working_dir": "/srv", "depends_on": {}, "environment": {},
        "env_file": None, "sys_env": "clear", "env": {}, "restart": {"policy": "no", "watch": []},
        "healthcheck": None, "user": None, "group": None, "limits": {"memory": None},
        "logs": {"max_size": None}, "wait": None, "effective_wait": True, "stop_signal": 15,
        "stop_grace_period": 10.0, "hooks": {},
    }
    spec.update(fields)
    return spec


def hook(run, **fields):
    return {"command": ["/bin/sh", "-c", run], "run": run, "user": None, "group": None, "working_dir": "/srv",
            "env": {}, "limits": {"memory": None}, "timeout": None, **fields}


def edge(restart=False):
    return {"condition": "service_started", "timeout": None, "restart": restart, "exit_code": None, "wait": None}


def lines(old, new, up=None, names=()):
    return [plan_line(entry) for entry in plan(old, new, set(old) if up is None else up, names)]


# -- changed_fields --------------------------------------------------------------------


def test_identical_definitions_have_no_changed_field():
    assert changed_fields(service(), service()) == []


def test_environment_is_compared_after_expansion_key_by_key():
    old = service(env={"LOG_LEVEL": "info", "PORT": "80"})
    new = service(env={"LOG_LEVEL": "debug", "PORT": "80", "NEW": "1"})
    assert changed_fields(old, new) == ["environment.LOG_LEVEL", "environment.NEW"]


def test_a_removed_variable_counts():
    assert changed_fields(service(env={"A": "1"}), service(env={})) == ["environment.A"]


def test_how_the_environment_was_written_does_not_count():
    # Moving a variable from `environment` into an env file gives the process the same env.
    old = service(environment={"A": "1"}, env={"A": "1"})
    new = service(environment={}, env_file="/srv/app.env", env={"A": "1"}, sys_env="inherit")
    assert changed_fields(old, new) == []


def test_what_a_start_waits_for_is_no_change():
    assert changed_fields(service(effective_wait=True), service(effective_wait=False)) == []
    assert changed_fields(service(wait=None), service(wait=False)) == []


def test_fields_are_listed_in_definition_order_with_nested_keys():
    old = service(restart={"policy": "no", "watch": []}, limits={"memory": None})
    new = service(command=["sleep", "5"], restart={"policy": "always", "watch": []}, limits={"memory": 1024},
                  stop_signal=9)
    assert changed_fields(old, new) == ["command", "restart.policy", "limits.memory", "stop_signal"]


def test_a_healthcheck_added_or_removed_is_one_field_and_tuned_one_is_nested():
    check = {"test": ["true"], "interval": 30.0}
    assert changed_fields(service(), service(healthcheck=check)) == ["healthcheck"]
    assert changed_fields(service(healthcheck=check), service(healthcheck={**check, "interval": 1.0})) == [
        "healthcheck.interval"]


def test_dependencies_and_their_edges_count():
    old = service(depends_on={"db": edge()})
    assert changed_fields(old, service(depends_on={"db": edge(restart=True)})) == ["depends_on.db"]
    assert changed_fields(old, service(depends_on={})) == ["depends_on.db"]


def test_a_hook_counts_for_its_own_changes_not_for_what_it_inherits():
    old = service(env={"A": "1"}, user="app", hooks={"pre_start": hook("true", env={"A": "1"}, user="app")})
    inherited = service(env={"A": "2"}, user="web",
                        hooks={"pre_start": hook("true", env={"A": "2"}, user="web")})
    assert changed_fields(old, inherited) == ["environment.A", "user"]
    own = service(env={"A": "1"}, user="app",
                  hooks={"pre_start": hook("true", env={"A": "1", "B": "2"}, user="app")})
    assert changed_fields(old, own) == ["hooks.pre_start"]
    rewritten = service(env={"A": "1"}, user="app", hooks={"pre_start": hook("false", env={"A": "1"}, user="app"),
                                                           "post_stop": hook("true")})
    assert changed_fields(old, rewritten) == ["hooks.pre_start", "hooks.post_stop"]


# -- plan -----------------------------------------------------------------------------


def test_plan_lines_say_what_happens_to_each_service():
    old = {"db": service(), "web": service(env={"LOG_LEVEL": "info"}), "old": service()}
    new = {"db": service(), "web": service(command=["web"], env={"LOG_LEVEL": "debug"}), "cache": service()}
    assert lines(old, new) == [
        "db  unchanged",
        "web  changed: command, environment.LOG_LEVEL -> restart",
        "cache  added -> start",
        "old  removed -> stop",
    ]


def test_a_changed_service_the_user_stopped_is_only_stored():
    old = {"web": service(), "worker": service()}
    new = {"web": service(), "worker": service(command=["new"])}
    assert lines(old, new, up={"web"}) == ["web  unchanged", "worker  changed (stopped): stored"]


def test_a_config_stopped_as_a_whole_stays_stopped_and_only_stores_what_it_gains():
    old = {"web": service()}
    new = {"web": service(command=["new"]), "cache": service()}
    assert lines(old, new, up=set()) == ["web  changed (stopped): stored", "cache  added (stopped): stored"]
    assert lines(old, new, up={"web"})[1] == "cache  added -> start"


def test_restart_true_dependents_of_a_restarted_service_restart_too_transitively():
    old = {"db": service(), "api": service(depends_on={"db": edge(restart=True)}),
           "web": service(depends_on={"api": edge(restart=True)}), "cron": service(depends_on={"db": edge()})}
    new = copy.deepcopy(old)
    new["db"]["command"] = ["db", "--new"]
    assert lines(old, new) == [
        "db  changed: command -> restart",
        "api  unchanged -> restart (depends on db)",
        "web  unchanged -> restart (depends on api)",
        "cron  unchanged",
    ]


def test_a_stopped_dependent_is_not_restarted():
    old = {"db": service(), "api": service(depends_on={"db": edge(restart=True)})}
    new = copy.deepcopy(old)
    new["db"]["command"] = ["db", "--new"]
    assert lines(old, new, up={"db"}) == ["db  changed: command -> restart", "api  unchanged"]


def test_naming_services_limits_the_plan():
    old = {"a": service(), "b": service()}
    new = {"a": service(command=["x"]), "b": service(command=["y"]), "c": service()}
    assert lines(old, new, names=["a", "c"]) == ["a  changed: command -> restart", "c  added -> start"]


def test_naming_an_unknown_service_is_an_error():
    with pytest.raises(PlanError, match="no such service: nope"):
        plan({"a": service()}, {"a": service()}, {"a"}, ["nope"])


def test_a_change_of_replicas_alone_scales_and_restarts_no_dependent():
    old = {"web": service(replicas=1), "api": service(depends_on={"web": edge(restart=True)})}
    new = copy.deepcopy(old)
    new["web"]["replicas"] = 3
    entries = plan(old, new, set(old))
    assert entries[0]["action"] == "scale" and entries[0]["replicas"] == [1, 3]
    assert [plan_line(entry) for entry in entries] == ["web  changed: replicas -> scale 1 → 3", "api  unchanged"]


def test_a_change_of_replicas_with_another_field_restarts_and_says_the_scale():
    old = {"web": service(replicas=3)}
    new = {"web": service(replicas=1, command=["new"])}
    assert lines(old, new) == ["web  changed: command, replicas -> restart, scale 3 → 1"]
    assert lines(old, new, up=set()) == ["web  changed (stopped): stored"]


def test_plan_entries_are_data_for_json():
    entry = plan({"a": service()}, {"a": service(stop_signal=9)}, {"a"})[0]
    assert entry == {"service": "a", "change": "changed", "fields": ["stop_signal"], "action": "restart",
                     "because": []}


# -- merge and global changes -----------------------------------------------------------


def snapshot(services, hooks=None):
    return {"format": 1, "source_path": "/srv/kepler.yaml", "kepler": {"hooks": hooks or {}, "logs": {}},
            "services": services, "start_order": list(services), "sources": {"/srv/kepler.yaml": {}}}


def test_a_whole_apply_keeps_the_new_snapshot():
    old, new = snapshot({"a": service()}), snapshot({"b": service()})
    assert merge(old, new, plan(old["services"], new["services"], {"a"})) is new


def test_a_named_apply_takes_only_those_services_and_keeps_the_old_header():
    old = snapshot({"a": service(env={"V": "1"}), "b": service(env={"V": "1"})})
    new = snapshot({"a": service(env={"V": "2"}), "b": service(env={"V": "2"}),
                    "c": service(depends_on={"a": edge()})}, hooks={"pre_start": hook("true")})
    new["sources"] = {"/srv/kepler.yaml": {"sha256": "new"}}
    entries = plan(old["services"], new["services"], {"a", "b"}, ["a", "c"])
    merged = merge(old, new, entries, ["a", "c"])
    assert merged["services"]["a"]["env"] == {"V": "2"} and merged["services"]["b"]["env"] == {"V": "1"}
    assert merged["start_order"] == ["a", "b", "c"]
    assert merged["kepler"] == old["kepler"] and merged["sources"] == old["sources"]


def test_a_named_apply_that_leaves_a_new_dependency_out_is_refused():
    old = snapshot({"a": service()})
    new = snapshot({"a": service(depends_on={"db": edge()}), "db": service()})
    entries = plan(old["services"], new["services"], {"a"}, ["a"])
    with pytest.raises(PlanError, match="a would depend on db, which this apply does not add: name it too"):
        merge(old, new, entries, ["a"])


def test_a_named_apply_that_would_make_a_cycle_is_refused():
    old = snapshot({"a": service(depends_on={"b": edge()}), "b": service()})
    new = snapshot({"a": service(), "b": service(depends_on={"a": edge()})})
    entries = plan(old["services"], new["services"], {"a", "b"}, ["b"])
    with pytest.raises(PlanError, match="cycle: "):
        merge(old, new, entries, ["b"])


def test_global_hook_changes_are_listed():
    old = snapshot({}, hooks={"pre_start": hook("true"), "post_stop": hook("true")})
    new = snapshot({}, hooks={"pre_start": hook("false"), "on_init": hook("true")})
    assert global_changes(old, new) == ["hooks.pre_start", "hooks.on_init", "hooks.post_stop"]


# -- on real bakes: global settings and env files reach the services that inherit them ----


def write(directory, name, text):
    with open(os.path.join(directory, name), "w") as file:
        file.write(text)
    return os.path.join(directory, name)


def baked_services(path):
    return bake(path, {"PATH": "/usr/bin"}, "/root").snapshot["services"]


def test_a_global_default_counts_only_for_the_services_that_inherit_it(tmp_path):
    path = write(tmp_path, "kepler.yaml", """
kepler: {logs: {max_size: 1M}, timeout: 5s}
services:
  db: {command: [sleep, "1"]}
  web: {command: [sleep, "1"], depends_on: [db], logs: {max_size: 9M}}
""")
    old = baked_services(path)
    write(tmp_path, "kepler.yaml", """
kepler: {logs: {max_size: 2M}, timeout: 5s}
services:
  db: {command: [sleep, "1"]}
  web: {command: [sleep, "1"], depends_on: [db], logs: {max_size: 9M}}
""")
    assert lines(old, baked_services(path)) == ["db  changed: logs.max_size -> restart", "web  unchanged"]


def test_an_env_file_change_counts_for_the_services_that_read_it(tmp_path):
    write(tmp_path, "app.env", "LOG_LEVEL=info\n")
    path = write(tmp_path, "kepler.yaml", """
services:
  web: {command: [sleep, "1"], env_file: app.env}
  db: {command: [sleep, "1"]}
""")
    old = baked_services(path)
    write(tmp_path, "app.env", "LOG_LEVEL=debug\n")
    assert lines(old, baked_services(path)) == ["web  changed: environment.LOG_LEVEL -> restart", "db  unchanged"]


def test_the_bake_records_every_file_it_read(tmp_path):
    write(tmp_path, "app.env", "A=1\n")
    write(tmp_path, "mod.lua", "return {x = 1}\n")
    write(tmp_path, "cmd.lua", "return {'sleep', '1'}\n")
    path = write(tmp_path, "kepler.yaml", """
lua: |
  m = require("mod")
services:
  web: {command: !lua_file cmd.lua, env_file: app.env}
""")
    sources = bake(path, {}, "/root").snapshot["sources"]
    assert sorted(sources) == sorted(str(tmp_path / name) for name in ("kepler.yaml", "app.env", "mod.lua",
                                                                        "cmd.lua"))
    assert sources[str(tmp_path / "app.env")]["size"] == 4
