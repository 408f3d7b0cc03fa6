"""Start and stop: order, hooks, signals and states, on fake children."""


from keplerd.model import states

TWO = """
services:
  db: {command: [db]}
  web:
    command: [web]
    depends_on: {db: {condition: service_started}}
"""


def test_start_spawns_dependencies_first_and_both_run(stack):
    stack.load(TWO)
    assert stack.start() == ["db", "web"]
    stack.wait_status("web", states.RUNNING)
    assert stack.system.spawns() == ["db", "web"]
    assert stack.status("db") == states.RUNNING


def test_stop_stops_dependents_first_with_the_stop_signal(stack):
    stack.load(TWO)
    stack.start()
    stack.wait_status("web", states.RUNNING)
    stack.stop()
    stops = [name for kind, name, _ in stack.system.journal if kind == "stop"]
    assert stops == ["web", "db"]
    assert stack.statuses() == {"db": states.STOPPED, "web": states.STOPPED}
    assert stack["web"].desired == "down"
