"""A study's registered hypotheses: the schema of a suite's `study:` block, shared by the harness
(which records the design in the store before the first run) and the reports (which check each
hypothesis). Plain Python, no numpy: the harness validates it before any work.

A hypothesis reads one statistic of one per-run metric over the study's runs and compares it
with a threshold:

    - name: cql_dips                  # a short id (letters, digits, _ -)
      metric: dip                     # dip | final_score | offline_score | regret (reports/metrics.py)
      statistic: mean                 # mean (one method) | mean_difference | p_less | p_greater (two)
      methods: [cql]
      direction: greater              # greater | less: which side of `value` the claim is on
      value: 0
      level: 0.95                     # the interval the test reads; null: the estimate alone

With a `level`, the hypothesis holds when the whole interval lies strictly beyond `value`; with
`level: null`, when the estimate reaches `value` (ties hold). p_less is P(X's metric < Y's) for a
run of X and a run of Y drawn at random, ties counted half (rliable's probability of
improvement); mean_difference is X's mean minus Y's.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass

STUDY_FILE = "study.json"  # runs_dir/<suite>/study.json: the registered design
METRICS = ("dip", "final_score", "offline_score", "regret")
STATISTICS = {"mean": 1, "mean_difference": 2, "p_less": 2, "p_greater": 2}  # name: methods it reads
DIRECTIONS = ("greater", "less")
KEYS = ("name", "metric", "statistic", "methods", "direction", "value", "level")
METRIC_WORDS = {"dip": "dip", "final_score": "final score", "offline_score": "offline score J0",
                "regret": "regret"}


class StudyError(ValueError):
    """A bad `study:` block (one line: what and how to fix it)."""


@dataclass(frozen=True)
class Hypothesis:
    name: str
    metric: str
    statistic: str
    methods: tuple[str, ...]
    direction: str
    value: float
    level: float | None = 0.95

    def __post_init__(self):
        where = f"suite.study.hypotheses.{self.name}"
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", self.name):
            raise StudyError(f"suite.study.hypotheses: name {self.name!r} must be letters, digits, _ or -")
        if self.metric not in METRICS:
            raise StudyError(f"{where}.metric '{self.metric}' is unknown; choose one of: {', '.join(METRICS)}")
        if self.statistic not in STATISTICS:
            raise StudyError(f"{where}.statistic '{self.statistic}' is unknown; choose one of: {', '.join(STATISTICS)}")
        if self.direction not in DIRECTIONS:
            raise StudyError(f"{where}.direction '{self.direction}' is unknown; choose one of: {', '.join(DIRECTIONS)}")
        n = STATISTICS[self.statistic]
        if (not isinstance(self.methods, tuple) or len(self.methods) != n
                or not all(isinstance(m, str) for m in self.methods) or len(set(self.methods)) != n):
            raise StudyError(f"{where}.methods must name {n} different method(s) for {self.statistic}, "
                             f"got {list(self.methods) if isinstance(self.methods, tuple) else self.methods!r}")
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)) or self.value != self.value \
                or abs(self.value) == float("inf"):
            raise StudyError(f"{where}.value must be a finite number, got {self.value!r}")
        if self.level is not None and (isinstance(self.level, bool) or not isinstance(self.level, (int, float))
                                       or not 0 < self.level < 1):
            raise StudyError(f"{where}.level must be a fraction in (0, 1) such as 0.95, or null "
                             f"(the estimate alone), got {self.level!r}")
        object.__setattr__(self, "value", float(self.value))
        object.__setattr__(self, "level", None if self.level is None else float(self.level))

    def statistic_words(self) -> str:
        m, x = METRIC_WORDS[self.metric], self.methods[0]
        if self.statistic == "mean":
            return f"{x}'s mean {m}"
        y = self.methods[1]
        if self.statistic == "mean_difference":
            return f"{x}'s mean {m} - {y}'s"
        return f"P({x}'s {m} {'<' if self.statistic == 'p_less' else '>'} {y}'s)"

    def claim(self) -> str:
        """The hypothesis in words, e.g. "the 95% CI of cql's mean dip lies above 0"."""
        side = "above" if self.direction == "greater" else "below"
        if self.level is None:
            return f"{self.statistic_words()} {'>=' if self.direction == 'greater' else '<='} {self.value:g}"
        return f"the {self.level:.0%} CI of {self.statistic_words()} lies {side} {self.value:g}"

    def holds(self, estimate: float, lo: float, hi: float) -> bool:
        """The registered rule on an estimate and its interval (at `level`)."""
        if self.level is None:
            return estimate >= self.value if self.direction == "greater" else estimate <= self.value
        return lo > self.value if self.direction == "greater" else hi < self.value

    def to_dict(self) -> dict:
        d = asdict(self)
        d["methods"] = list(self.methods)
        return d


def parse_study(block, methods: list[str]) -> dict | None:
    """The validated `study:` block of a suite running `methods` (None: the suite has none):
    {"hypotheses": [Hypothesis...], "dip_window": float}."""
    if block is None:
        return None
    if not isinstance(block, dict):
        raise StudyError(f"suite.study must be a mapping with 'hypotheses' (and optionally 'dip_window'), got {block!r}")
    unknown = sorted(set(block) - {"hypotheses", "dip_window"})
    if unknown:
        raise StudyError(f"suite.study.{unknown[0]} is not an option; valid: hypotheses, dip_window")
    hyps = block.get("hypotheses")
    if not isinstance(hyps, list) or not hyps:
        raise StudyError("suite.study.hypotheses must be a non-empty list of hypotheses (docs/reports.md)")
    out, names = [], set()
    for i, h in enumerate(hyps):
        if not isinstance(h, dict):
            raise StudyError(f"suite.study.hypotheses[{i}] must be a mapping with {', '.join(KEYS)}, got {h!r}")
        missing = [k for k in KEYS if k not in h and k != "level"]
        extra = sorted(set(h) - set(KEYS))
        if missing or extra:
            what = f"lacks {', '.join(missing)}" if missing else f"has unknown key {extra[0]}"
            raise StudyError(f"suite.study.hypotheses[{i}] {what}; keys: {', '.join(KEYS)}")
        methods_ = h["methods"]
        hyp = Hypothesis(**{**h, "methods": tuple(methods_) if isinstance(methods_, (list, tuple)) else methods_})
        for m in hyp.methods:
            if m not in methods:
                raise StudyError(f"suite.study.hypotheses.{hyp.name}: method '{m}' is not in suite.algorithms "
                                 f"({', '.join(methods)})")
        if hyp.name in names:
            raise StudyError(f"suite.study.hypotheses: the name '{hyp.name}' is used twice")
        names.add(hyp.name)
        out.append(hyp)
    window = block.get("dip_window", 0.25)
    if isinstance(window, bool) or not isinstance(window, (int, float)) or not 0 < window <= 1:
        raise StudyError(f"suite.study.dip_window must be a fraction in (0, 1], got {window!r}")
    return {"hypotheses": out, "dip_window": float(window)}


def design_hash(design: dict) -> str:
    """The hash of a design (everything in study.json but the hash and the registration note)."""
    payload = {k: v for k, v in design.items() if k not in ("hash", "registered")}
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def hypotheses_of(design: dict) -> list[Hypothesis]:
    """The Hypothesis objects of a design read back from study.json."""
    return [Hypothesis(**{**h, "methods": tuple(h["methods"])}) for h in design["hypotheses"]]
