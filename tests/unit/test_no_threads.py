"""The daemon has no threads, and refuses to run Python between fork and exec if it ever has one."""

import subprocess
import sys
import textwrap

import pytest


def run_in_daemon_process(code):
    """Run *code* in a fresh interpreter set up as keplerd is (patched gevent, its resolver)."""
    script = "import keplerd.daemon\n" + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_name_lookup_starts_no_thread():
    output = run_in_daemon_process("""
        import socket
        from keplerd.osproc.process import thread_count
        socket.getaddrinfo("localhost", 80)
        socket.gethostbyname("localhost")
        print(thread_count())
    """)
    assert output == "1"


SPAWN_WITH_A_THREAD = """
    import os, time
    from gevent.monkey import get_original
    from keplerd.osproc import clone_into, process

    clone_into._usable = clone_into._usable and SPAWNER
    limits = {"max_fds": 256}
    child = process.spawn(["true"], {"PATH": "/usr/bin:/bin"}, "/", limits=limits)
    print("alone", child.pid > 0)
    get_original("_thread", "start_new_thread")(time.sleep, (5,))
    time.sleep(0.1)  # (gevent's sleep) the thread exists once start_new_thread returns; be generous
    output_read, output_write = os.pipe()
    try:
        child = process.spawn(["sh", "-c", "ulimit -n"], {"PATH": "/usr/bin:/bin"}, "/", limits=limits,
                              stdout=output_write)
        os.close(output_write)
        print("with limits", os.read(output_read, 100).decode().strip())
    except process.SpawnError as error:
        print("refused:", error)
    child = process.spawn(["true"], {"PATH": "/usr/bin:/bin"}, "/")
    print("plain", child.pid > 0)
    os._exit(0)
"""


def test_without_the_c_spawner_a_spawn_with_limits_is_refused_while_another_thread_exists():
    lines = run_in_daemon_process("SPAWNER = False\n" + textwrap.dedent(SPAWN_WITH_A_THREAD)).splitlines()
    assert lines[0] == "alone True"
    assert lines[1].startswith("refused: cannot start sh: the daemon has 2 threads")
    assert lines[2] == "plain True", "a spawn that runs no Python in the child is still allowed"


def test_the_c_spawner_runs_no_python_in_the_child_so_a_thread_does_not_matter():
    from keplerd.osproc import clone_into

    if not clone_into.usable():
        pytest.skip("the C spawner is not built here")
    lines = run_in_daemon_process("SPAWNER = True\n" + textwrap.dedent(SPAWN_WITH_A_THREAD)).splitlines()
    assert lines == ["alone True", "with limits 256", "plain True"]
