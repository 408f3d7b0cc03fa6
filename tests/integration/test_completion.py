"""keplerctl completion: the bash and zsh scripts complete commands, flags and service names.

The scripts run in the real shells; zsh's completion builtins are replaced by
functions that print what would be offered.
"""

import shutil
import subprocess

import pytest

from tests.integration.harness import BIN, KEPLERCTL

# zsh: `compadd -- words` prints the words, `_files` says FILES; compdef is a no-op.
_ZSH_STUBS = 'compadd() { shift; print -r -- "$*"; }; _files() { print -r -- FILES; }; compdef() { :; }; '


@pytest.fixture
def project(tmp_path):
    (tmp_path / "kepler.yaml").write_text("services:\n  web:\n    command: [x]\n  worker:\n    command: [y]\n")
    (tmp_path / "other.yaml").write_text("services:\n  db:\n    command: [z]\n")
    return tmp_path


def _env():
    return {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": "/root"}


def bash_complete(cwd, *words):
    """Return what bash offers for the command line *words* (the last one being completed)."""
    code = ('source <(keplerctl completion bash); COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); '
            '_keplerctl; printf "%s\\n" "${COMPREPLY[@]}"')
    result = subprocess.run(["bash", "-c", code, "bash", "keplerctl", *words], cwd=cwd, env=_env(),
                            capture_output=True, text=True, timeout=30, check=True)
    return result.stdout.split()


def zsh_complete(cwd, *words):
    zsh = shutil.which("zsh")
    assert zsh, "zsh is missing: `make test-tools` installs it"
    code = _ZSH_STUBS + 'source <(keplerctl completion zsh); words=(keplerctl "$@"); CURRENT=${#words}; _keplerctl'
    result = subprocess.run([zsh, "-f", "-c", code, "zsh", *words], cwd=cwd, env=_env(),
                            capture_output=True, text=True, timeout=30, check=True)
    return result.stdout.split()


@pytest.mark.parametrize("complete", [bash_complete, zsh_complete], ids=["bash", "zsh"])
def test_completion_offers_commands_flags_and_service_names(project, complete):
    assert {"start", "stop", "logs", "daemon", "completion"} <= set(complete(project, ""))
    assert set(complete(project, "daemon", "")) == {"start", "stop", "restart", "reexec", "status"}
    assert {"--no-deps", "--detach", "--wait", "--timeout"} <= set(complete(project, "start", "--"))
    assert set(complete(project, "stop", "")) == {"web", "worker"}
    # After `logs`, -f is --follow (no value); the service names still come.
    assert set(complete(project, "logs", "-f", "--tail", "5", "")) == {"web", "worker"}
    # -f FILE before the command picks the config whose services are offered.
    assert set(complete(project, "-f", "other.yaml", "restart", "")) == {"db"}
    assert set(complete(project, "completion", "")) == {"bash", "zsh"}


def test_bash_completes_prefixes_signals_and_files(project):
    assert bash_complete(project, "st") == ["start", "stop"]
    assert bash_complete(project, "stop", "web", "w") == ["web", "worker"]
    assert bash_complete(project, "stop", "-s", "SIGKI") == ["SIGKILL"]
    assert bash_complete(project, "-f", "oth") == ["other.yaml"]


def test_without_a_config_no_service_names_are_offered(tmp_path):
    assert bash_complete(tmp_path, "stop", "") == []


def test_unknown_shells_are_a_usage_error():
    result = subprocess.run([KEPLERCTL, "completion", "fish"], capture_output=True, text=True, env=_env())
    assert result.returncode == 1 and "invalid choice: 'fish'" in result.stderr
