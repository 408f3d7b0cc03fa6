"""A run that only waits for its process parks its supervisor (issue #25, S7): no greenlet waits, all the same.

Parked: the supervisor is a greenlet not yet started (no frame, no saved stack),
which the process's exit starts. A run with a probe or a notify socket keeps its
supervisor waiting.
"""

from keplerd.model import states


def parked(service):
    """The run is up (post_start done) and its supervisor waits unstarted (a fresh one has not run yet)."""
    supervisor = service._supervisor
    return (service.status == states.RUNNING and service.reached_up and supervisor is not None
            and not supervisor.dead and supervisor.gr_frame is None)


def test_a_plain_run_parks_and_its_exit_is_still_seen_and_restarted(stack):
    stack.load("services:\n  job: {command: [job], restart: {policy: always, backoff: 0}}\n")
    stack.start()
    stack.system.wait_spawn("job")
    stack.wait_for(lambda: parked(stack["job"]), "a parked supervisor")
    assert stack["job"].supervised and stack.status("job") == states.RUNNING
    stack.system.wait_spawn("job").exit(3)
    stack.system.wait_spawn("job", count=2)
    stack.wait_for(lambda: parked(stack["job"]), "parked again")
    assert stack["job"].restarts == 1 and stack["job"].exit_code == 3


def test_a_parked_run_ends_on_its_own_and_finishes(stack):
    stack.load("services:\n  job: {command: [job], restart: {policy: no}}\n")
    stack.start()
    stack.wait_for(lambda: parked(stack["job"]), "a parked supervisor")
    stack.system.wait_spawn("job").exit(0)
    stack.wait_status("job", states.EXITED)
    assert not stack["job"].supervised and stack["job"].child is None


def test_a_parked_run_stops_and_runs_post_stop(stack):
    stack.load("""
        services:
          job:
            command: [job]
            hooks: {post_stop: {command: [cleanup]}}
    """)
    stack.start()
    stack.wait_for(lambda: parked(stack["job"]), "a parked supervisor")
    child = stack.system.wait_spawn("job")
    stack.stop()
    assert stack.status("job") == states.STOPPED and child.returncode is not None
    assert not stack["job"].supervised
    assert stack.system.spawns() == ["job", "job.post_stop"]


def test_a_helper_crash_fails_a_parked_run_and_ends_its_process(stack):
    stack.load("services:\n  job: {command: [job]}\n")
    stack.start()
    stack.wait_for(lambda: parked(stack["job"]), "a parked supervisor")
    child = stack.system.wait_spawn("job")

    def bug():
        raise RuntimeError("watch bug")

    stack["job"].spawn_helper("file watch")(bug)
    stack.wait_status("job", states.FAILED)
    assert stack["job"].reason == "internal error: file watch crashed: RuntimeError('watch bug')"
    assert child.returncode is not None


def test_a_probed_run_keeps_its_supervisor_waiting(stack):
    stack.load("""
        services:
          web:
            command: [web]
            healthcheck: {test: [check], interval: 1h, start_period: 1h}
    """)
    stack.start()
    stack.system.wait_spawn("web")
    stack.wait_for(lambda: stack["web"].reached_up, "web up")
    assert stack["web"]._supervisor.gr_frame is not None and not parked(stack["web"])
