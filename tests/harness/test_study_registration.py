"""A suite's registered study through the front door: the design's hash in the dry run, the
design recorded in the store before the first run, and runs of a changed design refused."""
import json
import re

import pytest

from harness.schema import ConfigError
from scoring.study import parse_study
from tests.harness.test_run import TINY, default_suite, harness

HYPOTHESIS = "{name:cql_dips,metric:dip,statistic:mean,methods:[cql],direction:greater,value:0,level:0.95}"
STUDY = f"+suite.study={{hypotheses:[{HYPOTHESIS}]}}"


def design_of(proc) -> str:
    found = re.search(r"study 'smoke': design ([0-9a-f]{12})", proc.stdout)
    assert found, proc.stdout[-2000:] + proc.stderr[-2000:]
    return found.group(1)


def test_the_dry_run_shows_the_hypotheses_and_a_hash_of_the_design(tmp_path):
    base = ["suite=smoke", f"runs_dir={tmp_path}", "dry_run=true", *TINY]
    proc = harness(*base, STUDY)
    assert proc.returncode == 0, proc.stderr
    assert "cql_dips: the 95% CI of cql's mean dip lies above 0" in proc.stdout
    assert "not yet registered" in proc.stdout
    first = design_of(proc)
    assert design_of(harness(*base, STUDY, "device=cpu", "launcher.workers=1")) == first  # where it runs: same design
    changed = [design_of(harness(*base, STUDY, change)) for change in
               ("suite.seeds=[0,1]", "protocol.checkpoint_every=100")]
    changed.append(design_of(harness(*base, STUDY.replace("value:0", "value:5"))))
    assert len({first, *changed}) == 4
    assert "study" not in harness("suite=smoke", f"runs_dir={tmp_path}", "dry_run=true").stdout  # none registered


def test_the_design_is_recorded_before_the_first_run_and_a_changed_design_is_refused(tmp_path):
    base = ["suite=smoke", f"runs_dir={tmp_path}", *TINY, "report=false", "progress=false"]
    expected = design_of(harness(*base, STUDY, "dry_run=true"))
    proc = harness(*base, "algorithm=cql", "seed=0")  # one run, before the study is registered
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (tmp_path / "smoke" / "study.json").exists()
    proc = harness(*base, STUDY, "algorithm=cql", "seed=0")  # the same run, now registered: not redone
    assert proc.returncode == 0, proc.stderr[-2000:]
    recorded = json.loads((tmp_path / "smoke" / "study.json").read_text())
    assert recorded["hash"] == expected and recorded["registered"] == {"finished_runs_before": 1}
    assert recorded["seeds"] == {"calql": [0], "cql": [0]} and recorded["hypotheses"][0]["name"] == "cql_dips"
    assert "registered in" in harness(*base, STUDY, "dry_run=true").stdout
    before = (tmp_path / "smoke" / "study.json").read_text()
    other = STUDY.replace("value:0", "value:5")
    for change, why in (("suite.seeds=[0,1]", "changed: seeds"), ("protocol.checkpoint_every=100", "changed: protocol"),
                        (other, "changed: hypotheses")):
        proc = harness(*base, *([STUDY] if change != other else []), change)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, (change, proc.stderr)
        assert f"registers study 'smoke' as design {expected}" in proc.stderr and why in proc.stderr
    proc = harness(*base, "algorithm=cql", "seed=0", STUDY, "protocol.checkpoint_every=100")  # one of its runs, changed
    assert proc.returncode == 2 and "changed: protocol" in proc.stderr
    proc = harness(*base, "seed=7", "algorithm=cql", STUDY, "dry_run=true")  # a seed the design does not hold
    assert proc.returncode == 0 and "outside the study and its verdicts" in proc.stdout
    proc = harness(*base)  # the same name without the study
    assert proc.returncode == 2 and "no study: block" in proc.stderr
    assert (tmp_path / "smoke" / "study.json").read_text() == before
    assert not (tmp_path / "smoke" / "pointmaze-umaze-diverse" / "cql" / "seed1").exists()


@pytest.mark.parametrize("block, words", [
    ({"hypotheses": [{"name": "a", "metric": "dips", "statistic": "mean", "methods": ["cql"],
                      "direction": "greater", "value": 0}]}, "metric 'dips' is unknown"),
    ({"hypotheses": [{"name": "a", "metric": "dip", "statistic": "p_less", "methods": ["cql"],
                      "direction": "greater", "value": 0.5}]}, "must name 2 different method(s)"),
    ({"hypotheses": [{"name": "a", "metric": "dip", "statistic": "mean", "methods": ["sac"],
                      "direction": "greater", "value": 0}]}, "method 'sac' is not in suite.algorithms"),
    ({"hypotheses": [{"name": "a", "metric": "dip", "statistic": "mean", "methods": ["cql"],
                      "direction": "up", "value": 0}]}, "direction 'up' is unknown"),
    ({"hypotheses": [{"name": "a", "metric": "dip", "statistic": "mean", "methods": ["cql"],
                      "direction": "greater", "value": 0, "level": 95}]}, "level must be a fraction"),
    ({"hypotheses": []}, "non-empty list"),
    ({"hypotheses": [{"name": "a"}], "seeds": 3}, "suite.study.seeds is not an option"),
])
def test_a_bad_study_block_is_one_line_naming_the_fix(block, words):
    with pytest.raises(ValueError) as info:
        parse_study(block, ["calql", "cql"])
    assert words in str(info.value) and "\n" not in str(info.value)


def test_a_bad_study_block_is_refused_by_the_front_door_with_exit_code_2(tmp_path):
    proc = harness("suite=smoke", f"runs_dir={tmp_path}", STUDY.replace("metric:dip", "metric:dips"))
    assert proc.returncode == 2 and "suite.study.hypotheses.cql_dips.metric 'dips' is unknown" in proc.stderr
    assert not tmp_path.joinpath("smoke").exists()
    assert issubclass(ConfigError, ValueError)


@pytest.mark.slow
def test_a_reduced_default_study_runs_through_the_front_door_and_says_what_it_found(tmp_path):
    """`python -m harness.run` (no suite=: the default study), with its first 2 seeds and a tiny
    protocol: the closing table gives each method's dip with its interval and the sentence saying
    what was compared; the registered hypotheses' verdicts follow, then where the report and the
    full study are. What it runs is read from the composed default suite."""
    suite = default_suite()
    seeds = suite["seeds"][:2]
    tiny = ["protocol.offline_steps=100", "protocol.online_steps=400", "protocol.eval_every_offline=100",
            "protocol.eval_every=100", "protocol.eval_episodes=2", "protocol.log_every=50",
            "protocol.checkpoint_every=0"]
    proc = harness(f"runs_dir={tmp_path}", f"suite.seeds=[{','.join(map(str, seeds))}]", *tiny, "progress=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out, name, methods = proc.stdout, suite["name"], suite["algorithms"]
    for algo in methods:
        row = next(line for line in out.splitlines() if line.startswith(algo + " "))
        assert re.search(rf"\d+\.\d \[\s*\d+\.\d, \s*\d+\.\d\]\s+{len(seeds)}/{len(seeds)} done$", row), row
    window = suite["study"]["dip_window"] * 400
    assert (f"Compared: {' and '.join(methods)}, pre-trained offline and then fine-tuned online (100 updates, then "
            f"400 env steps) on {', '.join(sorted(suite['tasks']))}. The dip is how far a method's score (0-100) "
            f"falls below its offline score in the first {window:,.0f} env steps of fine-tuning. This run: "
            f"{min(methods)}'s mean dip") in out  # the methods side by side, in name order
    verdicts = "".join(rf"\n  (HOLDS|FAILS) +{h['name']}: .*" for h in suite["study"]["hypotheses"])
    assert re.search(rf"study '{name}' \(design [0-9a-f]{{12}}\):{verdicts}", out), out
    runs = len(seeds) * len(suite["tasks"])
    assert f"runs {suite['study']['hypotheses'][0]['methods'][0]} {runs}/{runs}" in out
    assert f"report: {tmp_path / name / 'report' / 'index.html'}" in out
    assert "the full unlearning-dip study: docs/dip-study.md" in out
    recorded = json.loads((tmp_path / name / "study.json").read_text())
    assert recorded["seeds"] == {algo: seeds for algo in methods}
    assert recorded["dip_window"] == suite["study"]["dip_window"] and recorded["tasks"] == suite["tasks"]
    assert recorded["registered"] == {"finished_runs_before": 0}  # recorded before the first run
