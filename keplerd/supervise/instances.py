"""The instances of a config's services (SPEC §17): how many, their names, and renames when the count crosses 1.

A mixin of ``Project``, which holds ``snapshot``, ``scaled`` (counts set by
``scale``), ``services`` (instance name → ``Service``) and ``_instances``
(service → its instances in order).
"""

from keplerd.model.states import DESIRED_UP
from keplerd.supervise.service import Service


class Instances:
    """Counting, naming and (re)building a project's service instances."""

    def replica_count(self, base):
        """Return how many instances service *base* runs: its ``replicas``, or what ``scale`` set."""
        return self.scaled.get(base, self.snapshot["services"][base].get("replicas", 1))

    def instance_name(self, base, index):
        """Return ``web.2``; the one instance of a service that has one is plain ``web``.

        The name follows the count (the file's ``replicas`` or what ``scale`` set):
        going from one instance to more renames ``web`` to ``web.1``, and back.
        """
        if index == 1 and self.replica_count(base) == 1:
            return base
        return f"{base}.{index}"

    def instances(self, base):
        """Return the instances of service *base*, in ascending order."""
        return self._instances.get(base, [])

    def set_count(self, base, count, wanted_up=False):
        """Make service *base* have *count* instances: new ones are created stopped, extra ones forgotten.

        With *wanted_up* the new ones are wanted up (the caller starts them next).
        Crossing 1 renames instance 1 (``web`` ↔ ``web.1``), process kept. Either
        way ``state.json`` is written at once, so a daemon killed next finds the
        instance under its new name and brings the new ones up at boot.
        Returns the renames, ``{old name: new name}``.
        """
        before = len(self.instances(base))
        self.pin_count(base, count)
        renamed = self._build_services()
        if wanted_up:
            for service in self.instances(base)[before:]:
                service.desired = DESIRED_UP
        if renamed or wanted_up:
            self.write_state_now()
        else:
            self.persist()
        return renamed

    def pin_count(self, base, count):
        """Record *count* as service *base*'s count (``scaled``, when it differs from the file's)."""
        if count == self.snapshot["services"][base].get("replicas", 1):
            self.scaled.pop(base, None)
        else:
            self.scaled[base] = count

    def _build_services(self):
        """(Re)build ``services`` (instance name → Service) in config order, keeping existing instances.

        An instance is kept by its service and index; one whose name changes with the
        count is renamed (``Service.rename``). Returns the renames, ``{old name: new name}``.
        """
        existing = {(service.base, service.index): service for service in self.services.values()}
        self.services, self._instances, renames = {}, {}, []
        for base, spec in self.snapshot["services"].items():
            instances = self._instances[base] = []
            for index in range(1, self.replica_count(base) + 1):
                name = self.instance_name(base, index)
                service = existing.pop((base, index), None)
                if service is None:
                    service = Service(name, spec, self, base=base, index=index)
                elif service.name != name:
                    renames.append((service, name))
                self.services[name] = service
                instances.append(service)
        for service in existing.values():
            self.logs.release(service.name)  # a removed instance: its log files stay, its writers go
        renamed = {}
        for service, name in renames:
            renamed[service.name] = name
            service.rename(name)
        return renamed

    def add_service(self, name, spec):
        """Add a service that a new definition brings, with its instances (stopped; ``apply`` starts them).

        The rest is not rebuilt: services the new definition removed are still here until they are stopped.
        """
        instances = self._instances[name] = []
        for index in range(1, spec.get("replicas", 1) + 1):
            instance = self.instance_name(name, index)
            self.services[instance] = Service(instance, spec, self, base=name, index=index)
            instances.append(self.services[instance])
        return instances


def renamed_from(name, base, saved_services):
    """Return the name instance *name* had in ``state.json`` when its count crossed 1 since, or None.

    ``web.1`` was ``web`` before a scale-up, ``web`` was ``web.1`` before a scale-down.
    """
    if name == base:
        candidate = f"{base}.1"
    elif name == f"{base}.1":
        candidate = base
    else:
        return None
    return candidate if candidate in saved_services else None


def valid_counts(saved, services):
    """Return the scaled counts of state.json that still name a service of the snapshot."""
    if not isinstance(saved, dict):
        return {}
    return {base: count for base, count in saved.items()
            if base in services and isinstance(count, int) and not isinstance(count, bool) and count >= 1}
