"""The supervision runtime on gevent: configs, services, hooks, probes, watches, events."""
