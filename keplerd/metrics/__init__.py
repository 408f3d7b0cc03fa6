"""Prometheus metrics of the daemon (SPEC §19): off unless ``metrics_listen`` is set.

Only ``address`` is light; ``exporter`` loads prometheus_client and is imported
by the daemon only when metrics are on.
"""
