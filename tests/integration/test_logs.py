"""Logs through a real keplerd: capture, retention, store, size bounds, hook logs, follow."""

import os
import signal
import subprocess
import threading

import pytest

from keplerd.cli.client import Client, CommandError
from keplerd.paths import config_id
from tests.integration.harness import KEPLERCTL, wait_for


def logs_dir(kepler, config="kepler.yaml"):
    path = os.path.realpath(os.path.join(kepler.workdir, config))
    return os.path.join(kepler.state_dir, "configs", config_id(path), "logs")


def texts(lines):
    """Return the text part of ``name | text`` lines."""
    return [line.split(" | ", 1)[1] for line in lines]


class Follower:
    """``keplerctl logs -f`` running in the background; its stdout is collected by a thread."""

    def __init__(self, kepler, *args, read=True):
        self.process = subprocess.Popen([KEPLERCTL, "logs", "-f", *args], cwd=kepler.workdir, env=kepler.env(),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = []
        self._reader = None
        if read:
            self.start_reading()

    def start_reading(self):
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def _collect(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def read_until(self, text):
        """Read stdout in this thread until a line ends with *text* (for a follower that then stops reading)."""
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.rstrip("\n").endswith(text):
                return

    def wait_text(self, text, timeout=15):
        return wait_for(lambda: any(line.endswith(text) for line in self.lines), timeout=timeout,
                        message=f"follower to see {text!r}; saw {self.lines[-5:]}")

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)


@pytest.fixture
def followers():
    started = []
    yield lambda kepler, *args, **kwargs: started.append(Follower(kepler, *args, **kwargs)) or started[-1]
    for follower in started:
        follower.stop()


# -- capture ------------------------------------------------------------------------------------


def test_stdout_and_stderr_are_both_captured(kepler):
    kepler.config("""
        services:
          talker:
            command: ["sh", "-c", "echo to-out; echo to-err >&2; printf 'no newline at the end'"]
    """)
    kepler.ctl("start", "-d")
    kepler.wait_status("talker", "exited")
    assert sorted(kepler.logs()) == sorted(["talker | to-out", "talker | to-err",
                                            "talker | no newline at the end"])
    assert os.path.getsize(os.path.join(logs_dir(kepler), "talker.stderr.log")) > 0


def test_a_line_over_16_kib_is_stored_in_pieces(kepler):
    kepler.config("""
        services:
          long:
            command: ["sh", "-c", "head -c 40000 /dev/zero | tr '\\\\0' x; echo; echo after"]
    """)
    kepler.ctl("start", "-d")
    kepler.wait_status("long", "exited")
    pieces = texts(kepler.logs("long"))
    assert [len(piece) for piece in pieces] == [16384, 16384, 40000 - 2 * 16384, 5]
    assert pieces[-1] == "after"


def test_logs_of_two_configs_never_mix(kepler, followers):
    for name in ("one", "two"):
        kepler.write(f"{name}/kepler.yaml", f"""
            services:
              web:
                command: ["sh", "-c", "echo from-{name}; while true; do sleep 0.05; echo again-{name}; done"]
        """)
        kepler.ctl("-f", f"{name}/kepler.yaml", "start", "-d")
    for name in ("one", "two"):
        lines = wait_for(lambda name=name: kepler.logs("--file", f"{name}/kepler.yaml", "--head", "3"),
                         message="logs")
        assert lines[0] == f"web | from-{name}"
        assert set(lines) <= {f"web | from-{name}", f"web | again-{name}"}
    follower = followers(kepler, "--file", "one/kepler.yaml")
    wait_for(lambda: len(follower.lines) > 10, message="lines at the follower")
    assert set(follower.lines) == {"web | from-one", "web | again-one"}


def test_tail_head_and_timestamps(kepler):
    kepler.config("""
        services:
          counter:
            command: ["sh", "-c", "i=1; while [ $i -le 500 ]; do echo line $i; i=$((i+1)); done"]
    """)
    kepler.ctl("start", "-d")
    kepler.wait_status("counter", "exited")
    assert texts(kepler.logs("--tail", "3")) == ["line 498", "line 499", "line 500"]
    assert texts(kepler.logs("--head", "2")) == ["line 1", "line 2"]
    assert len(kepler.logs()) == 500
    stamped = kepler.logs("-t", "--tail", "1")[0]
    assert stamped.endswith(" counter | line 500") and stamped[23] == "Z" and stamped[10] == "T"


def test_a_long_log_arrives_in_several_batches_in_order(kepler):
    kepler.config("""
        services:
          many:
            command: ["sh", "-c", "seq 1 12000"]
    """)
    kepler.ctl("start", "-d")
    kepler.wait_status("many", "exited")
    assert texts(kepler.logs()) == [str(number) for number in range(1, 12001)]


def test_an_unknown_cursor_is_a_clear_error(kepler):
    kepler.config("""
        services:
          web:
            command: ["true"]
    """)
    kepler.ctl("start", "-d")
    socket_path = os.path.join(kepler.state_dir, "kepler.sock")
    with Client(socket_path) as client:
        with pytest.raises(CommandError, match="unknown or expired log cursor"):
            client.call({"type": "logs_read", "cursor": "0123456789abcdef"})
        opened = client.call({"type": "logs", "config": os.path.join(kepler.workdir, "kepler.yaml"),
                              "follow": True})
        client.call({"type": "logs_close", "cursor": opened["cursor"]})
        with pytest.raises(CommandError, match="unknown or expired"):
            client.call({"type": "logs_read", "cursor": opened["cursor"]})


def test_head_with_follow_is_refused(kepler):
    kepler.config("""
        services:
          web:
            command: ["true"]
    """)
    kepler.ctl("start", "-d")
    result = kepler.ctl("logs", "-f", "--head", "1", check=False)
    assert result.returncode == 1 and "--head" in result.stderr


def test_names_are_coloured_when_kepler_color_forces_it(kepler):
    kepler.config("""
        services:
          web:
            command: ["echo", "hi"]
    """)
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "exited")
    coloured = kepler.ctl("logs", env=kepler.env(KEPLER_COLOR="1")).stdout
    assert coloured.startswith("\x1b[") and "web |\x1b[0m hi" in coloured
    assert kepler.ctl("logs").stdout == "web | hi\n", "NO_COLOR (set by the harness) and no terminal: plain"


# -- retention ----------------------------------------------------------------------------------------

RUN_COUNTER = """
        services:
          job:
            command:
              - sh
              - -c
              - n=$(($(cat {count} 2>/dev/null || echo 0) + 1)); echo $n > {count}; echo run $n; {rest}
            logs:
              retention: {retention}
"""


def run_job(kepler, retention, rest="sleep 1000", restart=None):
    count = os.path.join(kepler.workdir, "count")
    config = RUN_COUNTER.format(count=count, rest=rest, retention=retention)
    if restart:
        config += f"            restart: {restart}\n"
    kepler.config(config)


def wait_logs(kepler, expected):
    return wait_for(lambda: texts(kepler.logs("job")) == expected, message=f"logs to be {expected}; "
                    f"they are {texts(kepler.logs('job'))}")


@pytest.mark.parametrize(("setting", "expected"), [(None, ["run 1"]), ("clear", []), ("retain", ["run 1"])])
def test_retention_on_stop_retains_by_default(kepler, setting, expected):
    run_job(kepler, f"{{on_stop: {setting}}}" if setting else "{}")
    kepler.ctl("start", "-d")
    wait_logs(kepler, ["run 1"])
    kepler.ctl("stop", "job")
    assert texts(kepler.logs("job")) == expected


def plant(directory, name, stream, text):
    with open(os.path.join(directory, f"{name}.{stream}.log"), "a") as file:
        file.write(f"1 {text}\n")


def test_hook_logs_belong_to_their_service_and_no_hook_hides_them(kepler):
    kepler.config("""
        services:
          web:
            command: ["sh", "-c", "echo web-line; sleep 1000"]
          api:
            command: ["sh", "-c", "echo api-line; sleep 1000"]
    """)
    kepler.ctl("start", "-d")
    wait_for(lambda: len(kepler.logs()) == 2, message="both services' lines")
    directory = logs_dir(kepler)
    plant(directory, "web.pre_start", "stdout", "web-hook-line")
    plant(directory, "global.pre_start", "stderr", "global-hook-line")
    assert sorted(texts(kepler.logs())) == ["api-line", "global-hook-line", "web-hook-line", "web-line"]
    assert sorted(texts(kepler.logs("--no-hook"))) == ["api-line", "web-line"]
    assert sorted(texts(kepler.logs("web"))) == ["web-hook-line", "web-line"]
    assert texts(kepler.logs("web", "--no-hook")) == ["web-line"]
    assert "web.pre_start | web-hook-line" in kepler.logs("web")


def test_clearing_a_services_logs_clears_its_hook_logs_too(kepler):
    kepler.config("""
        services:
          web:
            command: ["sh", "-c", "echo web-line; sleep 1000"]
            logs: {retention: {on_stop: clear}}
          web-api:
            command: ["sh", "-c", "echo api-line; sleep 1000"]
    """)
    kepler.ctl("start", "-d")
    wait_for(lambda: len(kepler.logs()) == 2, message="both services' lines")
    directory = logs_dir(kepler)
    plant(directory, "web.post_start", "stdout", "web-hook-line")
    plant(directory, "web-api.post_start", "stdout", "api-hook-line")
    kepler.ctl("stop", "web")
    assert sorted(texts(kepler.logs())) == ["api-hook-line", "api-line"]
    assert sorted(os.listdir(directory)) == ["web-api.post_start.stdout.log", "web-api.stdout.log"]


# -- store and max_size ----------------------------------------------------------------------------------


def test_unstored_output_still_reaches_a_follower(kepler, followers):
    kepler.config("""
        services:
          quiet:
            command:
              - sh
              - -c
              - i=0; while true; do i=$((i+1)); echo secret-out $i; echo secret-err $i >&2; sleep 0.05; done
            logs:
              store: false
    """)
    kepler.ctl("start", "-d")
    kepler.wait_status("quiet", "running")
    follower = followers(kepler)
    wait_for(lambda: any("secret-out" in line for line in follower.lines), message="stdout at the follower")
    wait_for(lambda: any("secret-err" in line for line in follower.lines), message="stderr at the follower")
    assert kepler.logs() == []
    assert os.listdir(logs_dir(kepler)) == []


def test_store_per_stream(kepler):
    kepler.config("""
        services:
          half:
            command: ["sh", "-c", "echo kept; echo dropped >&2"]
            logs:
              store: {stderr: false}
    """)
    kepler.ctl("start", "-d")
    kepler.wait_status("half", "exited")
    assert kepler.logs() == ["half | kept"]


def test_global_log_settings_apply_with_per_service_overrides_field_by_field(kepler):
    kepler.config("""
        kepler:
          logs:
            store: {stderr: false}
            retention: {on_stop: retain}
        services:
          plain:
            command: ["sh", "-c", "echo plain-out; echo plain-err >&2; sleep 1000"]
          loud:
            command: ["sh", "-c", "echo loud-out; echo loud-err >&2; sleep 1000"]
            logs:
              store: {stderr: true}
    """)
    kepler.ctl("start", "-d")
    wait_for(lambda: len(kepler.logs()) == 3, message="three stored lines")
    kepler.ctl("stop")
    assert sorted(texts(kepler.logs())) == ["loud-err", "loud-out", "plain-out"]


def test_max_size_bounds_disk_and_keeps_the_newest_lines(kepler):
    kepler.config("""
        services:
          chatty:
            command:
              - sh
              - -c
              - |
                i=1
                while [ $i -le 20000 ]; do echo chatty line number $i; i=$((i+1)); done
                echo last-line
                sleep 1000
            logs:
              max_size: 64K
    """)
    kepler.ctl("start", "-d")
    directory = logs_dir(kepler)

    def disk():
        total = 0
        for name in os.listdir(directory):
            if name.startswith("chatty.stdout.log"):
                try:
                    total += os.path.getsize(os.path.join(directory, name))
                except FileNotFoundError:
                    pass  # rotated between the listing and the size: counted under its new name or next time
        return total

    def finished():
        assert disk() <= 64 * 1024
        return kepler.logs("--tail", "1") == ["chatty | last-line"]

    wait_for(finished, timeout=60, message="the last line")
    assert disk() <= 64 * 1024
    numbers = [int(text.split()[-1]) for text in texts(kepler.logs())[:-1]]
    assert numbers[-1] == 20000 and numbers == list(range(numbers[0], 20001)), "the newest lines, none missing"
    assert len(numbers) * len("1700000000000 chatty line number 12345\n") >= 28 * 1024


def test_buffered_lines_reach_disk_without_a_stop(kepler):
    kepler.config("""
        services:
          slow:
            command: ["sh", "-c", "echo buffered-line; sleep 1000"]
            logs:
              buffer_size: 1M
    """)
    kepler.ctl("start", "-d")
    path = os.path.join(logs_dir(kepler), "slow.stdout.log")
    wait_for(lambda: os.path.exists(path) and b"buffered-line" in open(path, "rb").read(),
             message="the flush timer to write the line")


# -- follow ------------------------------------------------------------------------------------------------


def test_follow_shows_stored_lines_then_new_ones_across_a_restart(kepler, followers):
    count = os.path.join(kepler.workdir, "count")
    kepler.config(f"""
        services:
          ticker:
            command:
              - sh
              - -c
              - |
                n=$(($(cat {count} 2>/dev/null || echo 0) + 1)); echo $n > {count}
                i=0
                while true; do i=$((i+1)); echo run $n tick $i; sleep 0.05; done
    """)
    kepler.ctl("start", "-d")
    wait_for(lambda: "ticker | run 1 tick 3" in kepler.logs(), message="a few ticks")
    follower = followers(kepler, "ticker")
    follower.wait_text("run 1 tick 1")
    follower.wait_text("run 1 tick 20")
    kepler.ctl("restart", "-d", "ticker")
    follower.wait_text("run 2 tick 5")
    seen = [line for line in follower.lines if "run 1" in line]
    ticks = [int(line.rsplit(" ", 1)[1]) for line in seen]
    assert ticks == list(range(1, len(ticks) + 1)), "no line lost or repeated between stored and live"


def test_follow_with_tail_starts_at_the_last_lines(kepler, followers):
    kepler.config("""
        services:
          web:
            command: ["sh", "-c", "echo one; echo two; echo three; sleep 1000"]
    """)
    kepler.ctl("start", "-d")
    wait_for(lambda: len(kepler.logs()) == 3, message="three lines")
    follower = followers(kepler, "--tail", "1")
    follower.wait_text("web | three")
    assert follower.lines == ["web | three"]
    follower.process.send_signal(signal.SIGINT)
    assert follower.process.wait(timeout=10) == 0, "Ctrl+C is the normal end of a follow"


def test_follow_continues_across_rotation(kepler, followers):
    go = kepler.write("go", "")
    kepler.config(f"""
        services:
          rotor:
            command:
              - sh
              - -c
              - |
                echo ready
                while [ ! -s {go} ]; do sleep 0.05; done
                i=1
                while [ $i -le 3000 ]; do echo rotating line $i; i=$((i+1)); done
                sleep 1000
            logs:
              max_size: 8K
    """)
    kepler.ctl("start", "-d")
    follower = followers(kepler)
    follower.wait_text("rotor | ready")
    with open(go, "w") as file:
        file.write("go")
    follower.wait_text("rotating line 3000", timeout=60)
    numbers = [int(line.rsplit(" ", 1)[1]) for line in follower.lines if "rotating line" in line]
    assert numbers == list(range(1, 3001))
    assert os.path.exists(os.path.join(logs_dir(kepler), "rotor.stdout.log.1"))


def test_many_followers_each_see_every_line(kepler, followers):
    kepler.config("""
        services:
          web:
            command: ["sh", "-c", "sleep 0.5; i=1; while [ $i -le 200 ]; do echo many $i; i=$((i+1)); done; sleep 1000"]
    """)
    kepler.ctl("start", "-d")
    many = [followers(kepler) for _ in range(5)]
    for follower in many:
        follower.wait_text("many 200")
        assert [line for line in follower.lines if "many" in line] == [f"web | many {i}" for i in range(1, 201)]


def test_a_follower_that_stops_reading_is_dropped_without_blocking_the_service(kepler, followers):
    go = kepler.write("go", "")
    kepler.config(f"""
        services:
          flood:
            command:
              - sh
              - -c
              - |
                echo ready
                while [ ! -s {go} ]; do sleep 0.05; done
                yes 0123456789012345678901234567890123456789012345678901234567890123456789 | head -n 200000
                echo flood-done
                sleep 1000
            logs:
              max_size: 2M
    """)
    kepler.ctl("start", "-d")
    stuck = followers(kepler, read=False)
    stuck.read_until("flood | ready")  # it is following; from now on nobody reads its output
    with open(go, "w") as file:
        file.write("go")
    wait_for(lambda: kepler.logs("--tail", "1") == ["flood | flood-done"], timeout=60,
             message="the service to write everything")
    stuck.start_reading()  # unstick it: it learns it was dropped
    assert stuck.process.wait(timeout=30) == 1
    assert "dropped" in stuck.process.stderr.read()
    assert kepler.daemon.poll() is None
