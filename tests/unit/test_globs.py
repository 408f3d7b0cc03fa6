import os

import pytest

from keplerd.model.globs import Glob, GlobSet


@pytest.mark.parametrize(("pattern", "path", "expected"), [
    # * : any run of characters within one component, dot files included
    ("/w/*.py", "/w/app.py", True),
    ("/w/*.py", "/w/.hidden.py", True),
    ("/w/*.py", "/w/app.pyc", False),
    ("/w/*.py", "/w/src/app.py", False),
    ("/w/*", "/w/anything", True),
    ("/w/a*b", "/w/ab", True),
    # ? : exactly one character, never a /
    ("/w/?.txt", "/w/a.txt", True),
    ("/w/?.txt", "/w/ab.txt", False),
    ("/w/a?b", "/w/a/b", False),
    # [abc], ranges, [!abc]
    ("/w/[abc].txt", "/w/b.txt", True),
    ("/w/[abc].txt", "/w/d.txt", False),
    ("/w/[a-c]x", "/w/bx", True),
    ("/w/[!abc].txt", "/w/d.txt", True),
    ("/w/[!abc].txt", "/w/a.txt", False),
    ("/w/[]]", "/w/]", True),
    ("/w/[x", "/w/[x", True),   # an unclosed bracket is literal
    # ** : any number of directories, zero included
    ("/w/**/*.py", "/w/app.py", True),
    ("/w/**/*.py", "/w/a/b/c/app.py", True),
    ("/w/**/*.py", "/w/a/b/c/app.txt", False),
    ("/w/src/**/test_*.py", "/w/src/x/test_a.py", True),
    ("/w/src/**/test_*.py", "/w/lib/x/test_a.py", False),
    ("/w/**/cache/*", "/w/cache/x", True),
    ("/w/**/cache/*", "/w/a/b/cache/x", True),
    ("/w/**/**/*.py", "/w/a/b.py", True),
    # a trailing ** is everything below its directory, not the directory itself
    ("/w/src/**", "/w/src/a", True),
    ("/w/src/**", "/w/src/a/b/c", True),
    ("/w/src/**", "/w/src", False),
    # ** inside a component is just a *
    ("/w/a**b", "/w/axxb", True),
    ("/w/a**b", "/w/ax/xb", False),
    # literal names
    ("/w/config.yaml", "/w/config.yaml", True),
    ("/w/config.yaml", "/w/sub/config.yaml", False),
    ("/w/Config.yaml", "/w/config.yaml", False),
])
def test_glob_matches(pattern, path, expected):
    assert Glob(pattern).matches(path) is expected


@pytest.mark.parametrize(("pattern", "directory", "expected"), [
    ("/w/src/**/*.py", "/w", True),
    ("/w/src/**/*.py", "/w/src", True),
    ("/w/src/**/*.py", "/w/src/a/b", True),
    ("/w/src/**/*.py", "/w/lib", False),
    ("/w/*.py", "/w", True),
    ("/w/*.py", "/w/src", False),
    ("/w/*/conf/*.yaml", "/w/a", True),
    ("/w/*/conf/*.yaml", "/w/a/conf", True),
    ("/w/*/conf/*.yaml", "/w/a/other", False),
    ("/w/*/conf/*.yaml", "/w/a/conf/deeper", False),
    ("/w/[!.]*/*.py", "/w/.git", False),
])
def test_glob_may_contain_prunes_directories(pattern, directory, expected):
    assert Glob(pattern).may_contain(directory) is expected


@pytest.mark.parametrize(("pattern", "root"), [
    ("/w/src/**/*.py", "/w/src"),
    ("/w/config.yaml", "/w"),
    ("/w/*/x", "/w"),
    ("/w/a/b?/c", "/w/a"),
    ("/*.py", "/"),
])
def test_glob_root_is_the_literal_start(pattern, root):
    assert Glob(pattern).root == root


def test_relative_patterns_are_anchored_at_the_base_dir_and_absolute_ones_kept(tmp_path):
    tmp_path = tmp_path.resolve()
    globs = GlobSet(["src/*.py", "/etc/app/*.conf", "../shared/**"], str(tmp_path / "w"))
    assert globs.matches(str(tmp_path / "w/src/app.py"))
    assert globs.matches("/etc/app/x.conf")
    assert globs.matches(str(tmp_path / "shared/a/b"))
    assert not globs.matches(str(tmp_path / "w/app.py"))
    assert globs.roots == [str(tmp_path / "w/src"), "/etc/app", str(tmp_path / "shared")]


def test_patterns_resolve_symlinks_in_their_literal_start(tmp_path):
    tmp_path = tmp_path.resolve()
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    globs = GlobSet(["*.py"], str(tmp_path / "link"))
    assert globs.matches(str(tmp_path / "real/app.py"))
    assert globs.roots == [str(tmp_path / "real")]


def test_relative_pattern_needs_an_anchor():
    with pytest.raises(ValueError):
        Glob("src/*.py")
