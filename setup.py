from setuptools import Extension, setup

# Two optional C parts: without a compiler the build goes on, and keplerd does the same in
# Python, slower (docs/decisions.md).
# - keplerd/osproc/_clone_into.c spawns straight into a service's cgroup; without it keplerd
#   moves itself into the cgroup to fork ("Spawning into the cgroup", "A C spawner").
# - keplerd/logs/_stamp.c stamps service output in one copy ("The log path").
setup(ext_modules=[
    Extension("keplerd.osproc._clone_into", ["keplerd/osproc/_clone_into.c"], optional=True),
    Extension("keplerd.logs._stamp", ["keplerd/logs/_stamp.c"], optional=True),
])
