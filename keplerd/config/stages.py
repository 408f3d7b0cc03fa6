"""Expand a loaded config tree in the three stages of SPEC §5, reading env files on the way.

Works on the raw YAML data, before validation: only strings are expanded; a value
of the wrong type is left for the schema to report. Decisions:

* Stage 1, ``env_file``, sees the system env; stage 2, ``environment`` values, see
  system env + env_file vars (never earlier ``environment`` entries); stage 3,
  ``working_dir``, ``user``, ``group``, every string under ``limits`` and each
  ``restart.watch`` pattern, see system env + env_file + environment.
* Stages depend on what is *visible*, not on ``sys_env``: a service with
  ``sys_env: clear`` can still build values from the caller's variables.
* Only the value of an ``environment`` entry is expanded (``KEY=${X}``), never its key.
* A service hook goes through the same three stages, starting from the service's
  stage-3 variables: its ``env_file`` sees them, its ``environment`` also its own
  env_file vars, its ``working_dir``/``user``/``group`` also its own environment.
  A global hook does the same starting from the system env only.
* Never expanded: ``command``, hook ``run``/``command``, ``healthcheck.test``, and
  every key not named above.
* ``env_file`` and ``working_dir`` become absolute, normalised paths (relative ones
  are relative to the config dir) in the returned tree.

Lua (SPEC §6) slots in through the *lua* evaluator (:class:`.lua.LuaEvaluator`):
before a field's stage expands it, ``lua.resolve(node, path, ctx)`` replaces the
``LuaChunk`` markers in it (``ctx`` holds ``env``, ``sys_env``, ``env_file``,
``service_name``, ``hook_name``); returning ``loader.ABSENT`` drops the key.
Order: the ``lua:`` block, ``kepler``, then per service in file order: a chunk
that is the whole entry, ``env_file``, ``environment``, every other key in file
order, then the hooks (each the same way), which build on the service's variables.
"""

import os

from ..sources import read_recorded
from .dotenv import parse_dotenv
from .errors import ConfigError
from .expand import expand
from .fields import scalar_text
from .loader import ABSENT, LuaChunk

STAGE3_FIELDS = ("working_dir", "user", "group")


class EnvFiles:
    """Read each env file once; keep its bytes (for the state dir) and its variables."""

    def __init__(self, config_dir, problems):
        self.config_dir = config_dir
        self.problems = problems
        self.contents = {}
        self.variables = {}
        self.records = {}  # path -> what ``ps`` compares to tell the file changed (keplerd.sources)

    def load(self, path, where):
        """Return the variables of the env file at absolute *path*; {} after reporting a problem."""
        if path in self.variables:
            return self.variables[path]
        self.variables[path] = {}
        try:
            data, self.records[path] = read_recorded(path)
        except OSError as error:
            self.problems.add(where, f"cannot read env file {path}: {error.strerror}")
            return {}
        self.contents[path] = data
        name = self.display_name(path)
        try:
            self.variables[path] = parse_dotenv(data.decode("utf-8"), name)
        except UnicodeDecodeError:
            self.problems.add_located(f"{name}: not valid UTF-8")
        except ConfigError as error:
            self.problems.extend(error)
        return self.variables[path]

    def display_name(self, path):
        relative = os.path.relpath(path, self.config_dir)
        return path if relative.startswith("..") else relative


class Stager:
    """Expand one config tree; ``stage(tree)`` returns the expanded copy."""

    def __init__(self, sys_env, home, config_dir, problems, env_files, lua):
        self.sys_env = dict(sys_env)
        self.home = home
        self.config_dir = config_dir
        self.problems = problems
        self.env_files = env_files
        self.lua = lua

    def stage(self, tree):
        tree = dict(tree)
        ctx = self._ctx(self.sys_env, {}, None, None)
        if "lua" in tree:
            self.lua.run_global(tree["lua"], ["lua"], ctx)
        kepler = self._resolve(tree, "kepler", ["kepler"], ctx)
        if isinstance(kepler, dict):
            tree["kepler"] = kepler = dict(kepler)
            self._resolve_rest(kepler, ["kepler"], ctx)
            self._stage_hooks(kepler, ["kepler"], self.sys_env, ctx)
        services = self._resolve(tree, "services", ["services"], ctx)
        if isinstance(services, dict):
            tree["services"] = services = dict(services)
            for name in list(services):
                ctx = self._ctx(self.sys_env, {}, name, None)
                service = self._resolve(services, name, ["services", name], ctx)
                if isinstance(service, dict):
                    services[name] = self._stage_service(name, service)
        return tree

    def _stage_service(self, name, service):
        path = ["services", name]
        block, variables, env_file_vars = self._stage_block(service, path, self.sys_env, name, None)
        limits = block.get("limits")
        if isinstance(limits, dict):
            block["limits"] = self._expand_items(limits, path + ["limits"], variables)
        restart = block.get("restart")
        if isinstance(restart, dict) and isinstance(restart.get("watch"), list):
            watch = self._expand_items(restart["watch"], path + ["restart", "watch"], variables)
            block["restart"] = {**restart, "watch": watch}
        ctx = self._ctx(variables, env_file_vars, name, None)
        self._stage_hooks(block, path, variables, ctx, service_name=name)
        return block

    def _stage_hooks(self, block, path, variables, ctx, service_name=None):
        """Stage each hook of *block* (a service, or the ``kepler`` section) from *variables*."""
        hooks = self._resolve(block, "hooks", path + ["hooks"], ctx)
        if not isinstance(hooks, dict):
            return
        block["hooks"] = hooks = dict(hooks)
        for hook_name in list(hooks):
            where = path + ["hooks", hook_name]
            hook = self._resolve(hooks, hook_name, where, {**ctx, "hook_name": hook_name})
            if isinstance(hook, dict):
                hooks[hook_name] = self._stage_block(hook, where, variables, service_name, hook_name)[0]

    def _stage_block(self, raw, path, variables, service_name, hook_name):
        """Run the three stages over a service or hook *raw* that starts from *variables*.

        Return the expanded copy, its stage-3 variables and its env_file variables.
        """
        block = dict(raw)
        ctx = self._ctx(variables, {}, service_name, hook_name)
        env_file_vars = self._stage_env_file(block, path, variables, ctx)
        visible = {**variables, **env_file_vars}
        ctx = self._ctx(visible, env_file_vars, service_name, hook_name)
        environment = self._stage_environment(block, path, visible, ctx)
        visible = {**visible, **environment}
        ctx = self._ctx(visible, env_file_vars, service_name, hook_name)
        self._resolve_rest(block, path, ctx, skip=("env_file", "environment", "hooks"))
        for key in STAGE3_FIELDS:
            if isinstance(block.get(key), str):
                block[key] = self._expand(block[key], path + [key], visible)
        if isinstance(block.get("working_dir"), str):
            block["working_dir"] = self._absolute(block["working_dir"])
        return block, visible, env_file_vars

    def _stage_env_file(self, block, path, variables, ctx):
        """Stage 1: expand ``env_file``, make it absolute and return its variables."""
        env_file = self._resolve(block, "env_file", path + ["env_file"], ctx, deep=True)
        if not isinstance(env_file, str):
            return {}
        expanded = self._expand(env_file, path + ["env_file"], variables)
        block["env_file"] = self._absolute(expanded)
        return self.env_files.load(block["env_file"], path + ["env_file"])

    def _stage_environment(self, block, path, variables, ctx):
        """Stage 2: expand the values of ``environment``; return the entries as a map."""
        environment = self._resolve(block, "environment", path + ["environment"], ctx, deep=True)
        where = path + ["environment"]
        result = {}
        if isinstance(environment, list):
            entries = list(environment)
            for index, entry in enumerate(entries):
                if isinstance(entry, str) and "=" in entry:
                    key, _, value = entry.partition("=")
                    result[key] = self._expand(value, where + [index], variables)
                    entries[index] = f"{key}={result[key]}"
            block["environment"] = entries
        elif isinstance(environment, dict):
            block["environment"] = entries = self._expand_items(environment, where, variables)
            texts = {key: scalar_text(value) for key, value in entries.items()}
            result = {key: text for key, text in texts.items() if text is not None}
        return result

    def _resolve(self, parent, key, path, ctx, deep=False):
        """Return ``parent[key]`` after Lua; update or drop it in *parent*.

        Only a chunk that is the whole value runs, unless *deep*: the keys inside
        a service, hook or section run later, each with its own stage's ``ctx``.
        """
        node = parent.get(key)
        if key not in parent or not deep and not isinstance(node, LuaChunk):
            return node
        node = self.lua.resolve(node, path, ctx)
        if node is ABSENT:
            parent.pop(key, None)
            return None
        parent[key] = node
        return node

    def _resolve_rest(self, block, path, ctx, skip=("hooks",)):
        for key in list(block):
            if key in skip:
                continue
            node = self.lua.resolve(block[key], path + [key], ctx)
            if node is ABSENT:
                del block[key]
            else:
                block[key] = node

    def _expand_items(self, items, path, variables):
        """Return a copy of the list or map *items* with its strings expanded."""
        pairs = items.items() if isinstance(items, dict) else enumerate(items)
        expanded = {
            key: self._expand(value, path + [key], variables) if isinstance(value, str) else value
            for key, value in pairs
        }
        return expanded if isinstance(items, dict) else list(expanded.values())

    def _expand(self, text, path, variables):
        try:
            return expand(text, variables, self.home)
        except ValueError as error:
            self.problems.add(path, str(error))
            return text

    def _absolute(self, path):
        return os.path.normpath(os.path.join(self.config_dir, path))

    def _ctx(self, env, env_file, service_name, hook_name):
        return {
            "env": env, "sys_env": self.sys_env, "env_file": env_file,
            "service_name": service_name, "hook_name": hook_name,
        }
