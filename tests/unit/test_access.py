"""Who may do what (SPEC §21): the decision tables, caller × owner and caller × user in the file × allow_run_as.

Users are this machine's: ``nobody`` (65534, group ``nogroup``) plays the non-root
caller, ``daemon`` (1) and ``bin`` (2) other users.
"""

import textwrap

import pytest

from keplerd.config import runas
from keplerd.config.bake import bake
from keplerd.config.errors import ConfigError
from keplerd.control.access import Caller, CallerRegistry, PermissionDenied, may_use, visible

NOBODY, DAEMON, BIN = 65534, 1, 2


def caller(allowed=(), hard_limits=None, uid=NOBODY, name="nobody"):
    """The bake's view of a non-root caller (what ``Caller.for_bake`` sends)."""
    return {"uid": uid, "gid": 65534, "groups": [65534], "name": name, "allowed": list(allowed),
            "hard_limits": hard_limits or {}}


# -- caller × owner ---------------------------------------------------------------------


@pytest.mark.parametrize("caller_uid, owner_uid, allowed", [
    (0, 0, True),               # root on root's config
    (0, NOBODY, True),          # root on anyone's
    (NOBODY, NOBODY, True),     # the owner
    (NOBODY, 0, False),         # a member on root's (or an old, ownerless) config
    (NOBODY, DAEMON, False),    # a member on another member's
])
def test_who_may_use_a_config(caller_uid, owner_uid, allowed):
    assert may_use(caller_uid, owner_uid) is allowed


class Peer:
    def __init__(self, uid, gid=65534, groups=(65534,), user="nobody", pid=1, limits=None):
        self.uid, self.gid, self.pid, self.user = uid, gid, pid, user
        self._groups, self._limits = set(groups), limits or {"memory": None, "cpu_time": None, "max_fds": 512}

    def groups(self):
        return self._groups

    def hard_limits(self):
        return self._limits


class Project:
    def __init__(self, config_id, owner_uid, owner):
        self.id, self.owner_uid, self.owner = config_id, owner_uid, owner
        self.source_path = f"/srv/{config_id}/kepler.yaml"


class Registry:
    """The registry's interface as the view uses it, over plain projects."""

    def __init__(self, *projects):
        self.projects = {project.id: project for project in projects}
        self.unloaded = []

    def find(self, config_path):
        return next(project for project in self.projects.values() if project.source_path == config_path)

    def prunable(self, force=False):
        return [(project, "forced") for project in self.projects.values()]

    def unload(self, project, remove_files=False):
        self.unloaded.append(project.id)


def mine_and_roots():
    return Registry(Project("mine", NOBODY, "nobody"), Project("roots", 0, "root"),
                    Project("daemons", DAEMON, "daemon"))


def test_a_member_sees_only_its_own_configs_and_root_sees_all():
    registry = mine_and_roots()
    assert list(CallerRegistry(registry, Caller(Peer(NOBODY))).projects) == ["mine"]
    assert list(CallerRegistry(registry, Caller(Peer(0, user="root"))).projects) == ["mine", "roots", "daemons"]
    assert [project.id for project in visible(NOBODY, registry.projects.values())] == ["mine"]
    assert [project.id for project, _why in CallerRegistry(registry, Caller(Peer(NOBODY))).prunable()] == ["mine"]


def test_another_users_config_is_refused_by_path_and_by_id_and_logged(caplog):
    view = CallerRegistry(mine_and_roots(), Caller(Peer(NOBODY, pid=4242)))
    assert view.find("/srv/mine/kepler.yaml").id == "mine"
    with pytest.raises(PermissionDenied, match=r"^permission denied: /srv/roots/kepler.yaml belongs to root$"):
        view.find("/srv/roots/kepler.yaml")
    with pytest.raises(PermissionDenied, match="belongs to daemon"):
        view.by_id("daemons")
    assert view.by_id("gone") is None
    assert "uid 65534 (nobody, pid 4242): permission denied: /srv/roots/kepler.yaml belongs to root" in caplog.text


def test_unloading_another_users_config_is_refused_before_anything_happens():
    registry = mine_and_roots()
    view = CallerRegistry(registry, Caller(Peer(NOBODY)))
    with pytest.raises(PermissionDenied):
        view.unload(registry.projects["roots"], remove_files=True)
    view.unload(registry.projects["mine"])
    assert registry.unloaded == ["mine"]


def test_a_registry_method_without_a_check_is_not_reachable():
    registry = mine_and_roots()
    registry.state_dir = "/var/lib/kepler"
    registry.kill_leftovers = lambda project: None
    view = CallerRegistry(registry, Caller(Peer(0, user="root")))
    assert view.state_dir == "/var/lib/kepler"
    with pytest.raises(AttributeError, match="add it to keplerd/control/access.py"):
        view.kill_leftovers(None)


def test_only_root_may_stop_the_daemon():
    with pytest.raises(PermissionDenied, match="only root may stop the daemon"):
        Caller(Peer(NOBODY)).authorize("daemon_stop")
    Caller(Peer(0, user="root")).authorize("daemon_stop")
    Caller(Peer(NOBODY)).authorize("ps")


def test_a_bake_for_root_is_unchecked_and_a_members_carries_its_ids_grants_and_limits():
    assert Caller(Peer(0, user="root")).for_bake() is None
    member = Caller(Peer(NOBODY, groups=(65534, 7)), allow_run_as={"nobody": ["daemon"], "65534": ["bin"], "x": ["y"]})
    assert member.for_bake() == {"uid": NOBODY, "gid": 65534, "groups": [7, 65534], "name": "nobody",
                                 "allowed": ["daemon", "bin"],
                                 "hard_limits": {"memory": None, "cpu_time": None, "max_fds": 512}}


# -- caller × user in the file × allow_run_as -------------------------------------------


@pytest.mark.parametrize("user, allowed, refusal", [
    ("nobody", [], None),                   # itself, by name
    ("65534", [], None),                    # itself, by uid
    ("root", [], "only root may run services as root (caller: nobody)"),
    ("0", [], "only root may run services as root (caller: nobody)"),
    ("daemon", [], "only root may run services as daemon (caller: nobody)"),
    ("daemon", ["daemon"], None),           # granted by name
    ("1", ["daemon"], None),                # granted by name, asked by uid
    ("daemon", ["1"], None),                # granted by uid, asked by name
    ("daemon", ["bin"], "only root may run services as daemon (caller: nobody)"),
    ("kt-no-such-user", [], "only root may run services as kt-no-such-user (caller: nobody)"),
    ("kt-no-such-user", ["kt-no-such-user"], None),   # granted: it fails at start, as for root
    ("65534:0", [], "only root may run services as group 0 (caller: nobody, not a member)"),
    ("65534:65534", [], None),              # its own group
    ("daemon:root", ["daemon"], "only root may run services as group root (caller: nobody, not a member)"),
    ("daemon:root", ["daemon", "root"], None),
])
def test_who_a_member_may_name_as_user(user, allowed, refusal):
    assert runas.user_refusal(user, caller(allowed)) == refusal


@pytest.mark.parametrize("group, allowed, refusal", [
    ("nogroup", [], None),                  # a group it is in
    ("65534", [], None),
    ("root", [], "only root may run services as group root (caller: nobody, not a member)"),
    ("daemon", ["daemon"], None),           # granted
    ("1", ["daemon"], None),
    ("daemon", ["bin"], "only root may run services as group daemon (caller: nobody, not a member)"),
])
def test_which_group_a_member_may_name(group, allowed, refusal):
    assert runas.group_refusal(group, caller(allowed)) == refusal


@pytest.mark.parametrize("name, value, hard, refusal", [
    ("max_fds", 512, 512, None),
    ("max_fds", 513, 512, "513 is above the hard limit of nobody (512): only root may raise it"),
    ("memory", 1 << 40, None, None),        # unlimited for the caller
    ("cpu_time", 61, 60, "61 is above the hard limit of nobody (60): only root may raise it"),
])
def test_a_member_may_not_raise_a_limit_above_its_own_hard_limit(name, value, hard, refusal):
    assert runas.limit_refusal(name, value, caller(hard_limits={name: hard})) == refusal


# -- the bake ----------------------------------------------------------------------------


def write(tmp_path, text):
    path = tmp_path / "kepler.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_a_members_bake_runs_everything_as_the_member_by_default(tmp_path):
    path = write(tmp_path, """\
        kepler: {hooks: {pre_start: {run: "true"}}}
        services:
          web:
            command: [sleep, "1000"]
            hooks: {post_start: {run: "true"}}
            healthcheck: {test: "true"}
          db: {command: [sleep, "1000"], group: nogroup}
    """)
    snapshot = bake(path, {}, "/", caller=caller()).snapshot
    services = snapshot["services"]
    assert snapshot["kepler"]["hooks"]["pre_start"]["user"] == "65534"
    assert services["web"]["user"] == services["web"]["hooks"]["post_start"]["user"] == "65534"
    assert (services["db"]["user"], services["db"]["group"]) == ("65534", "nogroup")


def test_roots_bake_is_as_before(tmp_path):
    path = write(tmp_path, """\
        kepler: {hooks: {pre_start: {run: "true", user: daemon}}}
        services: {web: {command: [sleep, "1000"], user: root, limits: {max_fds: 100000000}}}
    """)
    snapshot = bake(path, {}, "/").snapshot
    assert snapshot["services"]["web"]["user"] == "root"
    assert snapshot["kepler"]["hooks"]["pre_start"]["user"] == "daemon"


def test_a_members_bake_reports_every_refusal_located(tmp_path):
    path = write(tmp_path, """\
        kepler: {hooks: {on_init: {run: "true", user: root}}}
        services:
          web:
            command: [sleep, "1000"]
            user: daemon
            group: root
            limits: {max_fds: 4096}
            hooks: {pre_stop: {run: "true", user: bin}}
          ok: {command: [sleep, "1000"], user: nobody, limits: {max_fds: 1024}}
    """)
    with pytest.raises(ConfigError) as raised:
        bake(path, {}, "/", caller=caller(hard_limits={"max_fds": 1024}))
    assert raised.value.errors == [
        "kepler.yaml: kepler.hooks.on_init.user: only root may run hooks as root (caller: nobody)",
        "kepler.yaml: services.web.user: only root may run services as daemon (caller: nobody)",
        "kepler.yaml: services.web.group: only root may run services as group root (caller: nobody, not a member)",
        "kepler.yaml: services.web.limits.max_fds: 4096 is above the hard limit of nobody (1024): "
        "only root may raise it",
        "kepler.yaml: services.web.hooks.pre_stop.user: only root may run hooks as bin (caller: nobody)",
    ]
