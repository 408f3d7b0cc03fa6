"""A child cloned straight into its cgroup (``clone3(CLONE_INTO_CGROUP)``) starts as fork_exec would start it.

These run the C spawner against a throwaway cgroup of their own (removed after
each test) and compare what the child sees with what ``_posixsubprocess`` gives
the same arguments: the daemon relies on both paths being the same to a service.
"""

import errno
import grp
import json
import os
import platform
import pwd
import signal
import subprocess
import sys
import time

import pytest

from keplerd.osproc import cgroups, child_setup, clone_into, process

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups are root's")

# What the child reports about itself: its cgroup, session, umask, signals, fds, cwd and environment.
SELF_REPORT = ("grep '^0::' /proc/self/cgroup; ps -o sid= -p $$; umask; "
               "grep -E '^Sig(Ign|Blk)' /proc/self/status; ls /proc/$$/fd; "
               "pwd; env | grep -v '^PWD=\\|^SHLVL=\\|^_=' | sort")


def _cgroup2_mount():
    try:
        return cgroups._locate()[0]
    except (OSError, LookupError) as error:
        pytest.skip(f"no cgroup2 hierarchy: {error}")


@pytest.fixture
def cgroup():
    mount = _cgroup2_mount()
    path = os.path.join(mount, f"kepler-test-clone-{os.getpid()}")
    os.mkdir(path)
    yield path
    for pid in open(os.path.join(path, "cgroup.procs")).read().split():
        os.kill(int(pid), 9)
    _remove_when_empty(path)


def _remove_when_empty(path):
    deadline = time.monotonic() + 10
    while True:
        try:
            os.rmdir(path)
            return
        except OSError as error:
            if error.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@pytest.fixture
def usable():
    if not clone_into.usable():
        pytest.skip("this build or kernel cannot clone into a cgroup")


def _run_cloned(cgroup, argv, cwd="/tmp", env=None):
    """Clone *argv* into *cgroup* with stdout and stderr on one pipe; return (report, output, exit code)."""
    output_read, output_write = os.pipe()
    errpipe_read, errpipe_write = os.pipe2(os.O_CLOEXEC)
    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    env_list = [f"{key}={value}".encode() for key, value in (env or {"PATH": "/usr/bin:/bin"}).items()]
    try:
        pid, pending = clone_into.spawn(cgroup, os.fsencode(argv[0]), [os.fsencode(arg) for arg in argv],
                                        env_list, cwd, devnull, output_write, output_write, errpipe_write, 0o022,
                                        child_setup.Steps(None, {}, cwd, False))
    finally:
        for fd in (output_write, errpipe_write, devnull):
            os.close(fd)
    with os.fdopen(errpipe_read, "rb") as errors, os.fdopen(output_read, "rb") as output:
        report = errors.read()
        pending.release()
        text = output.read().decode()
    return report, text, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), pid


def _run_forked(argv, cwd="/tmp", env=None):
    """Run *argv* as fork_exec does for keplerd (no cgroup): the reference."""
    output_read, output_write = os.pipe()
    errpipe_read, errpipe_write = os.pipe2(os.O_CLOEXEC)
    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    env_list = [f"{key}={value}".encode() for key, value in (env or {"PATH": "/usr/bin:/bin"}).items()]
    try:
        pid = process._fork_exec([os.fsencode(arg) for arg in argv], (os.fsencode(argv[0]),), (errpipe_write,),
                                 cwd, env_list, devnull, output_write, output_write, errpipe_read,
                                 errpipe_write, None, watched=False)
    finally:
        for fd in (output_write, errpipe_write, devnull):
            os.close(fd)
    with os.fdopen(errpipe_read, "rb") as errors, os.fdopen(output_read, "rb") as output:
        report = errors.read()
        text = output.read().decode()
    return report, text, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), pid


def test_the_spawner_is_built_and_usable_on_x86_64():
    if platform.machine() != "x86_64":
        pytest.skip("the clone3 entry is written for x86_64 only")
    _cgroup2_mount()
    assert clone_into.usable(), "keplerd/osproc/_clone_into.c was not built (is a C compiler installed?)"


def test_a_cloned_child_starts_in_its_cgroup_as_a_forked_one_starts(cgroup, usable):
    env = {"PATH": "/usr/bin:/bin", "ONE": "1", "SPACED": "a b"}
    report, cloned, code, pid = _run_cloned(cgroup, ["/bin/sh", "-c", SELF_REPORT], env=env)
    assert (report, code) == (b"", 0)
    reference_report, forked, reference_code, reference_pid = _run_forked(["/bin/sh", "-c", SELF_REPORT], env=env)
    assert (reference_report, reference_code) == (b"", 0)

    cloned_lines, forked_lines = cloned.splitlines(), forked.splitlines()
    assert cloned_lines[0] == "0::" + cgroup[len(_cgroup2_mount()):]
    assert [int(cloned_lines[1]), int(forked_lines[1])] == [pid, reference_pid]  # a session of its own
    assert cloned_lines[2:] == forked_lines[2:]
    assert cloned_lines[2:4] == ["0022", "SigBlk:\t0000000000000000"]
    ignored = int(cloned_lines[4].split()[1], 16)  # what the test runner ignores stays ignored, as exec keeps it
    assert not ignored & (1 << (signal.SIGPIPE - 1) | 1 << (signal.SIGXFSZ - 1)), "Python's ignores are undone"
    assert cloned_lines[5:] == ["0", "1", "2", "/tmp", "ONE=1", "PATH=/usr/bin:/bin", "SPACED=a b"]


def test_an_inheritable_fd_of_the_daemon_is_not_passed_on(cgroup, usable):
    leaked_read, leaked_write = os.pipe()
    os.set_inheritable(leaked_write, True)
    try:
        check = f"test -e /proc/self/fd/{leaked_write} && echo open || echo closed"  # test: a shell builtin
        _report, cloned, code, _pid = _run_cloned(cgroup, ["/bin/sh", "-c", check])
    finally:
        os.close(leaked_read)
        os.close(leaked_write)
    assert (cloned, code) == ("closed\n", 0)


def test_a_program_that_cannot_be_executed_fails_as_a_forked_one_does(cgroup, usable, tmp_path):
    not_executable = tmp_path / "script"
    not_executable.write_text("#!/bin/sh\n")
    not_executable.chmod(0o644)
    for program, expected in (("/nonexistent/program", "program not found: /nonexistent/program"),
                              (str(not_executable), f"cannot execute {not_executable}: Permission denied")):
        report, _output, code, _pid = _run_cloned(cgroup, [program])
        reference_report, _output, reference_code, _pid = _run_forked([program])
        assert (report, code) == (reference_report, reference_code) == (report, 255)
        assert child_setup.describe(report, program, child_setup.Steps(None, {}, "/tmp", False)) == expected


def test_a_working_directory_that_cannot_be_entered_is_named(cgroup, usable):
    report, _output, code, _pid = _run_cloned(cgroup, ["/bin/true"], cwd="/nonexistent-dir")
    assert code == 255
    steps = child_setup.Steps(None, {}, "/nonexistent-dir", False)
    assert child_setup.describe(report, "/bin/true", steps) == \
        "cannot enter working directory /nonexistent-dir: No such file or directory"


_NO_STEPS = child_setup.Steps(None, {}, "/", False)


class _Refusing:
    """A kernel's answer to clone3, for the fallback logic (the real refusals need an old kernel or seccomp)."""

    AVAILABLE = 1

    def __init__(self, number):
        self.number = number

    def spawn_into(self, *args):
        raise OSError(self.number, os.strerror(self.number))


def test_a_kernel_that_refuses_clone3_turns_the_spawner_off_for_good(cgroup, monkeypatch):
    monkeypatch.setattr(clone_into, "_clone_into", _Refusing(errno.ENOSYS))
    monkeypatch.setattr(clone_into, "_usable", True)
    assert clone_into.spawn(cgroup, b"/bin/true", [b"true"], [], "/", 0, 1, 2, 3, 0o022, _NO_STEPS) is None
    assert not clone_into.usable()


def test_a_failed_fork_is_an_error_not_a_fallback(cgroup, monkeypatch):
    monkeypatch.setattr(clone_into, "_clone_into", _Refusing(errno.EAGAIN))
    monkeypatch.setattr(clone_into, "_usable", True)
    with pytest.raises(OSError) as raised:
        clone_into.spawn(cgroup, b"/bin/true", [b"true"], [], "/", 0, 1, 2, 3, 0o022, _NO_STEPS)
    assert raised.value.errno == errno.EAGAIN
    assert clone_into.usable()


# -- the steps: terminal, limits, user, as both spawners take them ------------------------

IDENTITY_REPORT = "id -u; id -g; id -G; ulimit -n; ulimit -t; ulimit -v; pwd"


# Runs in a fresh interpreter set up as keplerd is (patched gevent; no thread, where pytest-xdist has
# some): process.spawn with the C spawner, then without it; prints [output, reason] of each as JSON.
BOTH_WAYS = """
import keplerd.daemon
import json, os, sys
import gevent
from keplerd.osproc import clone_into, process

argv, cwd, options = json.loads(sys.argv[1])
results = []
keep_alive = gevent.get_hub().loop.timer(60)  # in keplerd, its server keeps the loop alive
keep_alive.start(lambda: None)
for spawner in (True, False):
    clone_into._usable = spawner
    process.forget_identities()
    output_read, output_write = os.pipe()
    try:
        child = process.spawn(argv, {"PATH": "/usr/bin:/bin"}, cwd, stdout=output_write, **options)
    except process.SpawnError as error:
        results.append([None, str(error)])
        continue
    finally:
        process.close_now(output_write)  # (gevent's os.close would wait for the loop)
        output = os.fdopen(output_read, "rb").read().decode()
    results.append([output, None if child.wait(10) == 0 else "exit " + str(child.returncode)])
print(json.dumps(results))
"""


def _spawn_both_ways(argv, cwd, **options):
    """Spawn *argv* through process.spawn with the C spawner, then without it: ``(output, reason)`` each."""
    done = subprocess.run([sys.executable, "-c", BOTH_WAYS, json.dumps([argv, cwd, options])],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [tuple(result) for result in json.loads(done.stdout)]


def test_limits_and_a_user_are_applied_alike_with_and_without_the_c_spawner(usable, accounts):
    extra = accounts.group("extra")
    user = accounts.user("steps", groups=[extra])
    limits = {"max_fds": 300, "cpu_time": 50, "memory": 512 * 1024 * 1024}
    cloned, forked = _spawn_both_ways(["sh", "-c", IDENTITY_REPORT], "/tmp", user=user, limits=limits)
    assert cloned == forked
    uid, gid, groups, fds, cpu, memory, cwd = cloned[0].split("\n")[:7]
    entry = pwd.getpwnam(user)
    assert (int(uid), int(gid)) == (entry.pw_uid, entry.pw_gid) != (0, 0)
    assert grp.getgrnam(extra).gr_gid in {int(group) for group in groups.split()}
    assert (fds, cpu, memory, cwd) == ("300", "50", str(512 * 1024), "/tmp")


def test_a_step_that_fails_reads_alike_with_and_without_the_c_spawner(usable, accounts, tmp_path):
    with open("/proc/sys/fs/nr_open") as nr_open:
        too_many = int(nr_open.read()) + 1
    cloned, forked = _spawn_both_ways(["true"], "/", limits={"max_fds": too_many})
    assert cloned == forked == (None, f"cannot apply limits.max_fds ({too_many}): not allowed to raise maximum limit")

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    user = accounts.user("locked")
    cloned, forked = _spawn_both_ways(["true"], str(private), user=user)
    assert cloned == forked == (None, f"cannot enter working directory {private} as user {user}: Permission denied")
