"""keplerctl exec through a real daemon (SPEC §17): non-interactive, then in a real terminal (tmux)."""

import os
import shutil
import signal
import subprocess
import uuid

import psutil
import pytest

from tests.integration.harness import KEPLERCTL, pids_with_marker, wait_for
from tests.integration.test_dependencies import config

SCRIPT = 'echo "$FOO $KEPLER_REPLICA/$KEPLER_REPLICAS"; id -u; pwd; ulimit -n; cat; echo oops >&2; exit 7'


def test_exec_runs_the_command_as_the_instance_runs_with_stdin_exit_code_and_stderr(kepler):
    config(kepler, {"web": {"command": ["sleep", "1000"], "replicas": 2, "user": "nobody", "working_dir": "/",
                            "environment": {"FOO": "bar"}, "limits": {"max_fds": 123}}})
    # The config is not started: exec bakes it and runs the command all the same.
    result = subprocess.run([KEPLERCTL, "exec", "web.2", "--", "sh", "-c", SCRIPT], cwd=kepler.workdir,
                            env=kepler.env(), input="piped in\n", capture_output=True, text=True, timeout=60)
    assert result.returncode == 7, result.stderr
    assert result.stdout.splitlines() == ["bar 2/2", "65534", "/", "123", "piped in"]
    assert result.stderr == "oops\n"
    assert kepler.ps()["web.2"]["status"] == "stopped"  # exec changes no service
    assert kepler.ctl("exec", "web", "--", "true").returncode == 0
    killed = kepler.ctl("exec", "web", "--", "sh", "-c", "kill -9 $$", check=False)
    assert killed.returncode == 137
    missing = kepler.ctl("exec", "nope", "--", "true", check=False)
    assert missing.returncode == 1 and "no such service: nope" in missing.stderr
    unknown = kepler.ctl("exec", "web", "--", "/no/such/program", check=False)
    assert unknown.returncode == 1 and "/no/such/program" in unknown.stderr


def test_the_command_is_killed_when_the_cli_goes_away(kepler):
    marker = f"exec-{uuid.uuid4().hex[:8]}"
    config(kepler, {"web": {"command": ["sleep", "1000"]}})
    cli = subprocess.Popen([KEPLERCTL, "exec", "web", "--", "bash", "-c", f"exec -a {marker} sleep 1000"],
                           cwd=kepler.workdir, env=kepler.env(), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: pids_with_marker(marker), message="the exec'd command to run")
        cli.send_signal(signal.SIGKILL)
        cli.wait()
        wait_for(lambda: not pids_with_marker(marker), message="the exec'd command to be killed")
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()


def test_ctrl_c_of_a_non_interactive_cli_interrupts_the_command(kepler):
    config(kepler, {"web": {"command": ["sleep", "1000"]}})
    script = "trap 'echo interrupted; exit 3' INT; echo ready; while :; do sleep 0.1; done"
    cli = subprocess.Popen([KEPLERCTL, "exec", "web", "--", "sh", "-c", script], cwd=kepler.workdir,
                           env=kepler.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    try:
        assert cli.stdout.readline() == "ready\n"
        cli.send_signal(signal.SIGINT)
        assert cli.wait(timeout=30) == 3
        assert cli.stdout.read() == "interrupted\n"
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()


def environ(pid):
    with open(f"/proc/{pid}/environ", "rb") as file:
        return set(file.read().split(b"\0"))


def cgroup_of(pid):
    with open(f"/proc/{pid}/cgroup") as file:
        return next(line.strip()[3:] for line in file if line.startswith("0::"))


def exec_forking(kepler, marker):
    """Exec, as web, a sleep with a child in its group and a double-forked, setsid'd one; return the CLI."""
    script = (f"setsid bash -c '(exec -a {marker}-escaped sleep 1000) &'; (exec -a {marker}-child sleep 1000) & "
              f"exec -a {marker}-main sleep 1000")
    cli = subprocess.Popen([KEPLERCTL, "exec", "web", "--", "bash", "-c", script], cwd=kepler.workdir,
                           env=kepler.env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    wait_for(lambda: all(pids_with_marker(f"{marker}-{part}") for part in ("main", "child", "escaped")),
             message="the exec'd command and its children")
    return cli


def stop_ends_the_exec(kepler, marker):
    """Exec a forking command in the running web, check its mark (and cgroup), stop web: all of it ends."""
    config(kepler, {"web": {"command": ["sleep", "1000"], "stop_grace_period": "1s"}})
    kepler.ctl("start", "-d", "--wait")
    cli = exec_forking(kepler, marker)
    try:
        escaped = pids_with_marker(f"{marker}-escaped")[0]
        config_id = os.path.basename(kepler.inspect_path())
        assert f"KEPLER_SERVICE_ID={config_id}/web".encode() in environ(escaped), "it carries web's mark"
        inspected = kepler.inspect("web")["services"]["web"]
        if inspected["containment"] == "cgroup":
            main = pids_with_marker(f"{marker}-main")[0]
            service = kepler.ps()["web"]["pid"]
            assert cgroup_of(main) == cgroup_of(escaped) == cgroup_of(service)
            assert cgroup_of(main).endswith(f"/{config_id}/web")
        kepler.ctl("stop", "web")
        wait_for(lambda: not pids_with_marker(marker), message="the exec'd command and its children to end")
        # It got the stop signal with the service (the kill that follows may overtake it).
        assert cli.wait(timeout=30) in (128 + signal.SIGTERM, 128 + signal.SIGKILL)
        return inspected["containment"]
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()


def test_a_stop_of_the_service_ends_its_exec_d_command_and_all_it_started(kepler):
    containment = stop_ends_the_exec(kepler, f"kt-exec-{uuid.uuid4().hex[:8]}")
    if containment != "cgroup":
        pytest.skip("keplerd found no writable cgroup v2 here: the cgroup membership was not checked")


def test_without_cgroups_the_mark_alone_ends_the_exec_d_command_with_the_stop(kepler_stopped):
    kepler = kepler_stopped
    kepler.write("keplerd.conf", f"autostart_dir: {kepler.root}/conf.d\ncontainment: process-group\n",
                 directory=kepler.root)
    kepler.start_daemon()
    assert stop_ends_the_exec(kepler, f"kt-exec-{uuid.uuid4().hex[:8]}") == "process-group"


def test_an_exec_of_a_stopped_service_joins_a_cgroup_made_for_it_and_removed_after(kepler):
    config(kepler, {"web": {"command": ["sleep", "1000"]}})
    result = kepler.ctl("exec", "web", "--", "cat", "/proc/self/cgroup")
    inspected = kepler.inspect("web")["services"]["web"]
    if inspected["containment"] != "cgroup":
        pytest.skip("keplerd found no writable cgroup v2 here")
    cgroup = inspected["cgroup"]
    line = next(line for line in result.stdout.splitlines() if line.startswith("0::"))
    assert line.endswith("/web") and cgroup.endswith(line[3:]), (line, cgroup)
    assert not os.path.exists(cgroup), "the cgroup made for the command is removed once it ended"
    assert kepler.ps()["web"]["status"] == "stopped"


@pytest.fixture
def tmux(kepler):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (make test-tools)")
    session = f"kepler-exec-{uuid.uuid4().hex[:8]}"
    socket_name = f"-L{session}"
    environment = " ".join(f"{key}={value}" for key, value in kepler.env().items()
                           if key.startswith(("KEPLER", "PATH", "HOME")))
    subprocess.run(["tmux", socket_name, "new-session", "-d", "-s", session, "-x", "100", "-y", "30",
                    "-c", kepler.workdir, f"env {environment} PS1='$ ' sh"], check=True)

    class Terminal:
        def type(self, *keys):
            subprocess.run(["tmux", socket_name, "send-keys", "-t", session, *keys], check=True)

        def screen(self):
            return subprocess.run(["tmux", socket_name, "capture-pane", "-p", "-t", session], check=True,
                                  capture_output=True, text=True).stdout

        def shows(self, text):
            return wait_for(lambda: text in self.screen(), message=f"{text!r} on the screen:\n{self.screen()}")

        def resize(self, columns, rows):
            subprocess.run(["tmux", socket_name, "resize-window", "-t", session, "-x", str(columns),
                            "-y", str(rows)], check=True)

    terminal = Terminal()
    try:
        terminal.shows("$")  # the outer shell is ready for keys (capture-pane drops trailing blanks)
        yield terminal
    finally:
        subprocess.run(["tmux", socket_name, "kill-server"], capture_output=True)


def running_command(argv):
    return [process.pid for process in psutil.process_iter(["cmdline"]) if process.info["cmdline"] == argv]


def test_exec_on_a_terminal_gets_a_pty_its_size_and_ctrl_c(kepler, tmux):
    config(kepler, {"web": {"command": ["sleep", "1000"], "environment": {"PS1": "in-web$ ", "TERM": "xterm"}}})
    tmux.type(f"{KEPLERCTL} exec web -- sh -i; echo exit=$?", "Enter")
    tmux.shows("in-web$")
    tmux.type("tty; stty size", "Enter")
    tmux.shows("/dev/pts/")
    tmux.shows("30 100")
    tmux.resize(90, 25)
    tmux.type("clear; stty size", "Enter")
    tmux.shows("25 90")
    tmux.type("sleep 987654", "Enter")
    wait_for(lambda: running_command(["sleep", "987654"]), message="sleep to run in the exec'd shell")
    tmux.type("C-c")
    # Only a shell that got its terminal back computes this (the typed text shows $((40+2))).
    tmux.type("echo after-$((40+2))", "Enter")
    tmux.shows("after-42")
    assert not running_command(["sleep", "987654"])
    tmux.type("exit 5", "Enter")
    tmux.shows("exit=5")
    assert not [line for line in tmux.screen().splitlines() if "Traceback" in line]
    assert os.path.isdir(kepler.workdir)
