"""Offline-to-online RL methods behind one interface (`base.Algorithm`), found by name.

Built-in methods register themselves on import; installed packages add theirs through the
`o2o_bench.algorithms` entry point group.
"""
from algorithms import awac, cql, iql, td3bc  # noqa: F401  (register awac, cql, calql, iql, td3bc)
from algorithms.base import (ActionSpec, Algorithm, Batch, ObsSpec, REGISTRY, available, get, make,
                             register)

__all__ = ["ActionSpec", "Algorithm", "Batch", "ObsSpec", "REGISTRY", "available", "get", "make", "register"]
