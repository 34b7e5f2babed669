"""Offline-to-online RL methods behind one interface (`base.Algorithm`), found by name.

Every module of this package registers its methods on import (all are imported here, so a new
method is one new file); installed packages add theirs through the `o2o_bench.algorithms`
entry point group.
"""
import importlib
import pkgutil

from algorithms.base import (ActionSpec, Algorithm, Batch, ObsSpec, REGISTRY, SeedStreams, available, get, make,
                             minimize, register)

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module not in ("base", "common", "conformance"):  # conformance: the suite, no method
        importlib.import_module(f"algorithms.{_module}")  # awac, cql (+ calql), iql, td3bc, ...

__all__ = ["ActionSpec", "Algorithm", "Batch", "ObsSpec", "REGISTRY", "SeedStreams", "available", "get", "make",
           "minimize", "register"]
