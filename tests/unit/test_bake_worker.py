"""The bake worker: a JSON request on stdin, the baked config or its errors on stdout."""

import base64
import json
import subprocess
import sys

from keplerd.config.bake import bake


def run_worker(request):
    result = subprocess.run([sys.executable, "-I", "-c", "from keplerd.config.worker import main; main()"],
                            input=json.dumps(request).encode(), capture_output=True, timeout=60,
                            cwd="/", env={"PYTHONPATH": ":".join(sys.path)})
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def request(path, env=None, **options):
    return {"config": str(path), "env": env or {}, "home": "/root", "display_name": None, "options": options}


def test_the_worker_answers_what_an_inline_bake_gives(tmp_path):
    (tmp_path / ".env").write_text("PORT=8080\n")
    config = tmp_path / "kepler.yaml"
    config.write_text("services:\n  web:\n    command: !lua return {'echo', ctx.env.PORT}\n    env_file: .env\n")
    env = {"HOME": "/root", "ODD": "bytes \udcff kept"}
    answer = run_worker(request(config, env, lua_time_limit=1.0))
    inline = bake(str(config), env, "/root", lua_time_limit=1.0)
    assert answer["ok"] is True
    assert answer["snapshot"] == json.loads(json.dumps(inline.snapshot))
    assert base64.b64decode(answer["config"]) == inline.config_bytes
    assert {name: base64.b64decode(data) for name, data in answer["env_files"].items()} == inline.env_files


def test_the_worker_answers_located_errors(tmp_path):
    config = tmp_path / "kepler.yaml"
    config.write_text("services:\n  web:\n    command: !lua while true do end\n")
    answer = run_worker(request(config, lua_time_limit=0.2))
    assert answer == {"ok": False, "errors": [
        "kepler.yaml: services.web.command: Lua time limit exceeded (0.2s of CPU per bake)"]}


def test_an_unreadable_config_is_an_error_answer(tmp_path):
    answer = run_worker(request(tmp_path / "gone.yaml"))
    assert answer["ok"] is False and "gone.yaml" in answer["errors"][0]


def settings_request(text):
    return {"settings": base64.b64encode(text.encode()).decode(), "display_name": "keplerd.conf"}


def test_the_worker_validates_keplerd_conf():
    assert run_worker(settings_request("log_level: debug\nlua_time_limit: 500ms\n")) == {
        "ok": True, "values": {"log_level": "debug", "lua_time_limit": 0.5}}


def test_the_worker_answers_located_settings_errors():
    assert run_worker(settings_request("log_level: loud\n")) == {"ok": False, "errors": [
        "keplerd.conf: log_level: invalid value 'loud': expected one of debug, info, warning, error"]}
