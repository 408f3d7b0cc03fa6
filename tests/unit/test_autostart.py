"""Which files of the autostart dir start, and when: at boot, and again on each rescan."""

import os

from keplerd import paths
from keplerd.config.errors import ConfigError
from keplerd.supervise.autostart import AUTOSTART_ENV, Autostart, config_files


class FakeProject:
    def __init__(self, path):
        self.name = path


class FakeRegistry:
    """Bakes any file whose text is not 'invalid'; records what it was given."""

    def __init__(self):
        self.projects = {}
        self.baked = []

    def get_or_bake(self, path, sys_env, home, display_name=None):
        with open(path) as file:
            if file.read() == "invalid":
                raise ConfigError([f"{display_name}: services: required key missing"])
        self.baked.append((path, sys_env, home))
        project = self.projects[paths.config_id(path)] = FakeProject(path)
        return project


def _autostart(directory):
    started = []
    return Autostart(FakeRegistry(), str(directory), start=started.append), started


def _write(directory, name, text="services: {}"):
    path = directory / name
    path.write_text(text)
    return str(path)


def test_only_yaml_files_count_in_name_order(tmp_path):
    for name in ("b.yaml", "a.yaml", "c.yml", "notes.txt", ".hidden.yaml"):
        _write(tmp_path, name)
    (tmp_path / "dir.yaml").mkdir()
    assert config_files(str(tmp_path)) == [str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]
    assert config_files(str(tmp_path / "missing")) == []


def test_an_invalid_file_is_skipped_and_the_others_start(tmp_path):
    good = _write(tmp_path, "good.yaml")
    _write(tmp_path, "bad.yaml", "invalid")
    autostart, started = _autostart(tmp_path)
    assert autostart.scan() == [good]
    assert [project.name for project in started] == [good]
    path, sys_env, home = autostart.registry.baked[0]
    assert sys_env == AUTOSTART_ENV and sys_env is not AUTOSTART_ENV and os.path.isabs(home)


def test_a_rescan_starts_new_and_fixed_files_only(tmp_path):
    first = _write(tmp_path, "first.yaml")
    broken = _write(tmp_path, "broken.yaml", "invalid")
    autostart, started = _autostart(tmp_path)
    autostart.scan()
    second = _write(tmp_path, "second.yaml")
    _write(tmp_path, "broken.yaml")
    assert autostart.scan() == [broken, second]
    assert autostart.scan() == []
    assert [project.name for project in started] == [first, broken, second]


def test_a_loaded_config_is_not_baked_again(tmp_path):
    path = _write(tmp_path, "app.yaml")
    autostart, started = _autostart(tmp_path)
    autostart.registry.projects[paths.config_id(path)] = FakeProject(path)  # restored from the state dir
    assert autostart.scan() == [] and started == [] and autostart.registry.baked == []


def test_a_file_unloaded_and_added_back_starts_again(tmp_path):
    path = _write(tmp_path, "app.yaml")
    autostart, started = _autostart(tmp_path)
    autostart.scan()
    os.unlink(path)
    autostart.registry.projects.clear()  # keplerctl stop --clean unloaded it
    assert autostart.scan() == []
    _write(tmp_path, "app.yaml")
    assert autostart.scan() == [path]
