from setuptools import Extension, setup

# Spawning straight into a service's cgroup (keplerd/osproc/_clone_into.c). Optional:
# without a compiler the build goes on, and keplerd moves itself into the cgroup to
# fork instead (slower at scale; docs/decisions.md, "Spawning into the cgroup").
setup(ext_modules=[Extension("keplerd.osproc._clone_into", ["keplerd/osproc/_clone_into.c"], optional=True)])
