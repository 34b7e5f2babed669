"""Offline-to-online RL methods behind one interface (`base.Algorithm`), found by name.

Built-in methods register themselves on import; installed packages add theirs through the
`o2o_bench.algorithms` entry point group.
"""
from algorithms import cql  # noqa: F401  (registers cql, calql)
from algorithms.base import (ActionSpec, Algorithm, Batch, ObsSpec, REGISTRY, available, get, make,
                             register)

__all__ = ["ActionSpec", "Algorithm", "Batch", "ObsSpec", "REGISTRY", "available", "get", "make", "register"]
