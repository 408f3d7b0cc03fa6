"""Configs: load a YAML file, expand it, validate it and bake it into a snapshot.

Entry points live in :mod:`keplerd.config.bake` (``bake``, ``check``); the one
error type is :class:`keplerd.config.errors.ConfigError`. Modules, in pipeline
order: ``loader`` (safe YAML, Lua markers), ``stages`` (variable expansion with
``expand`` and ``dotenv``, Lua with ``lua`` and ``luasandbox``), ``validate``
(``schema`` + ``fields``, the graph), ``snapshot`` (defaults and the final form).
"""
