"""The tools under test, by name, in the order a repetition starts with."""

from peers.circus import Circus
from peers.kepler import Kepler
from peers.pm2 import Pm2
from peers.supervisord import Supervisord

MANAGERS = {cls.name: cls for cls in (Kepler, Supervisord, Circus, Pm2)}
