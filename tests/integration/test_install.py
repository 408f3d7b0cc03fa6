"""make install DESTDIR=... lays out a system service; make uninstall takes it away again."""

import grp
import os
import shutil
import stat
import subprocess
import tempfile
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def staging():
    """A DESTDIR, a copy of the checkout to install from, and a throwaway group name.

    ``make install`` builds in the tree it runs in (build/, egg-info): on a copy,
    so that tests running meanwhile never see the live checkout change. The copy
    uses the checkout's venv, which make is told never to remake.
    """
    root = tempfile.mkdtemp(prefix="kinst-", dir="/tmp")
    source = os.path.join(root, "src")
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".state", "build", "*.egg-info", "__pycache__", ".pytest_cache", "results",
        ".scratch"))  # a benchmark's leftovers: sockets, which cannot be copied
    os.symlink(os.path.join(REPO, ".venv"), os.path.join(source, ".venv"))
    staged = os.path.join(root, "dest")
    group = f"ktg{uuid.uuid4().hex[:6]}"
    try:
        yield staged, group, source
    finally:
        subprocess.run(["groupdel", group], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _make(target, root, group, source):
    # -o: the venv is the checkout's own, never remade from here.
    return subprocess.run(["make", "--no-print-directory", "-C", source, "-o", ".venv/bin/.installed", target,
                           f"DESTDIR={root}",
                           "PREFIX=/usr/local", f"GROUP={group}", "CREATE_GROUP=yes"],
                          capture_output=True, text=True, timeout=300)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_make_install_lays_out_a_system_service_and_uninstall_removes_it(staging):
    root, group, source = staging
    at = lambda path: os.path.join(root, path.lstrip("/"))  # noqa: E731
    os.makedirs(at("/etc/kepler"))
    with open(at("/etc/kepler/keplerd.conf"), "w") as file:
        file.write("log_level: debug\n")  # the admin's: never overwritten

    installed = _make("install", root, group, source)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    for path in ("/usr/local/bin/keplerd", "/usr/local/bin/keplerctl", "/etc/init.d/keplerd"):
        assert _mode(at(path)) == 0o755, path
    for path in ("/usr/local/share/man/man1/keplerctl.1", "/usr/local/share/man/man5/kepler.yaml.5",
                 "/usr/local/share/man/man5/keplerd.conf.5", "/usr/local/share/man/man8/keplerd.8",
                 "/usr/local/lib/systemd/system/keplerd.service", "/etc/kepler/conf.d/README",
                 "/usr/local/share/bash-completion/completions/keplerctl",
                 "/usr/local/share/zsh/site-functions/_keplerctl"):
        assert _mode(at(path)) == 0o644, path
    with open(at("/etc/kepler/keplerd.conf")) as file:
        assert file.read() == "log_level: debug\n"
    with open(at("/usr/local/lib/systemd/system/keplerd.service")) as file:
        assert "ExecStart=/usr/local/bin/keplerd\n" in file.read()
    state = os.stat(at("/var/lib/kepler"))
    assert _mode(at("/var/lib/kepler")) == 0o770
    assert (state.st_uid, state.st_gid) == (0, grp.getgrnam(group).gr_gid)

    # The launchers run the staged package and its dependencies, from LIBDIR only.
    with open(at("/usr/local/bin/keplerctl")) as file:
        launcher = file.read()
    assert launcher.startswith("#!/") and " -I\n" in launcher.splitlines()[0] + "\n"
    assert '"/usr/local/lib/kepler"' in launcher and root not in launcher
    staged = launcher.replace('"/usr/local/lib/kepler"', repr(at("/usr/local/lib/kepler")))
    interpreter = launcher.splitlines()[0][2:].split()[0]
    version = subprocess.run([interpreter, "-I", "-c", staged, "--version"], capture_output=True, text=True)
    assert version.stdout.strip().startswith("keplerctl ") and version.returncode == 0, version.stderr
    imports = ("import sys; sys.path.insert(0, sys.argv[1]); import keplerd.daemon, lupa, psutil, "
               "inotify_simple, marshmallow, yaml; print(keplerd.__file__)")
    where = subprocess.run([interpreter, "-I", "-c", imports, at("/usr/local/lib/kepler")],
                           capture_output=True, text=True)
    assert where.stdout.startswith(at("/usr/local/lib/kepler/keplerd/")), where.stderr

    removed = _make("uninstall", root, group, source)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    for path in ("/usr/local/bin/keplerd", "/usr/local/bin/keplerctl", "/usr/local/lib/kepler",
                 "/etc/init.d/keplerd", "/usr/local/lib/systemd/system/keplerd.service",
                 "/usr/local/share/man/man8/keplerd.8", "/usr/local/share/bash-completion/completions/keplerctl"):
        assert not os.path.exists(at(path)), path
    assert os.path.exists(at("/etc/kepler/keplerd.conf")) and os.path.isdir(at("/var/lib/kepler"))
