"""Published references: each converter on small files in its source's published layout, the
protocol match rule, and the report on synthetic stores that agree and disagree with a reference."""
import pickle
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import yaml

import reports
from reports.aggregate import bootstrap_ci
from reports.load import load_store
from reports.reference import COLUMNS, ReferenceError, load_references, read_reference
from reports.reference.convert import Files, convert_corl, convert_qam, convert_qc, load_pickle
from reports.reference.match import differences, match_store, store_protocols
from reports.reference.names import our_method, our_task, reference_task
from tests.reports import synthetic

REPO = Path(__file__).resolve().parents[2]


def _dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))


# -- converters ------------------------------------------------------------------------------------
def _qc_files(root: Path) -> Path:
    steps21, steps11 = np.linspace(0, 2, 21), np.linspace(1, 2, 11)
    curve = lambda n, top: {"steps": np.linspace(0, 2, n) if n == 21 else steps11,  # noqa: E731
                            "means": np.linspace(0, top, n), "ci_lows": np.linspace(0, top, n) - 0.05,
                            "ci_highs": np.linspace(0, top, n) + 0.05}
    _dump(root / "plot_data/ogbench-individual.pkl", {
        ("cube-double-play-task2", "IQL"): curve(21, 0.4), ("scene-play-task2", "QC-FQL"): curve(21, 0.9),
        ("cube-quadruple-play-task1", "RLPD"): curve(11, 0.2)})
    _dump(root / "plot_data/robomimic-individual.pkl", {("lift", "QC"): curve(21, 1.0)})
    assert len(steps21) == 21
    return root


def test_convert_qc(tmp_path):
    frame = convert_qc(Files(root=_qc_files(tmp_path), commit="c0ffee"))
    assert list(frame.columns) == COLUMNS and len(frame) == 21 * 3 + 11
    assert set(frame["commit"]) == {"c0ffee"} and set(frame["seed"]) == {"aggregate"}
    iql = frame[frame["method"] == "IQL"].sort_values("step")
    assert iql["step"].tolist() == list(range(0, 2_000_001, 100_000))
    assert iql["score"].iloc[-1] == pytest.approx(40.0) and iql["ci_high"].iloc[-1] == pytest.approx(45.0)
    assert iql[["dataset", "offline_steps", "online_steps", "eval_episodes", "chunk"]].iloc[0].tolist() == \
        ["cube-double-play-v0", 1_000_000, 1_000_000, 50, 1]
    rlpd = frame[frame["method"] == "RLPD"]  # online only: steps count from its own start
    assert rlpd["step"].min() == 0 and rlpd["step"].max() == 1_000_000 and set(rlpd["offline_steps"]) == {0}
    assert set(rlpd["dataset"]) == {"cube-quadruple-play-100m-v0"}
    qcfql = frame[frame["method"] == "QC-FQL"]  # scene: QC's sparse reward
    assert set(qcfql["chunk"]) == {5} and set(qcfql["reward"]) == {"sparse"}
    assert set(iql["reward"]) == {"dense"} and set(frame.loc[frame["task"] != "lift", "success_timing"]) == {"post"}
    lift = frame[frame["task"] == "lift"]  # robomimic: not OGBench
    assert set(lift["dataset"]) == {"robomimic lift/mh/low_dim_v15"}
    assert set(lift["success_timing"]) == set(lift["reward"]) == {"n/a"}


def test_convert_qam(tmp_path):
    rng = np.random.default_rng(0)
    fql = rng.uniform(size=(30, 12))
    _dump(tmp_path / "exp_data/qam-exp-data.pkl", {
        ("cube-double-play-singletask-task2-v0", "FQL"): fql,
        ("antmaze-large-navigate-singletask-task1-v0", "RLPD"): rng.uniform(size=(10, 12)),
        ("cube-double-play", "FQL"): fql,  # a domain average: left out
        ("cube-double-play-singletask-task2-v0", "QAM"): fql,  # no counterpart of ours: left out
        ("puzzle-4x4-play-singletask-task1-v0", "FQL"): fql})  # a "-sparse" domain of QAM's
    frame = convert_qam(Files(root=tmp_path, commit="abc"))
    fq = frame[frame["method"] == "FQL"]
    assert set(frame["method"]) == {"FQL", "RLPD"}
    assert frame["success_timing"].isna().all()  # ogbench unpinned: unknown
    assert set(frame.loc[frame["task"].str.startswith("puzzle-4x4"), "reward"]) == {"sparse"}
    fq = fq[fq["task"] == "cube-double-play-singletask-task2-v0"]
    assert set(fq["reward"]) == {"dense"}
    # offline evaluations every 200K (5), every online one (10), 12 seeds each
    assert sorted(fq["step"].unique()) == [200_000, 400_000, 600_000, 800_000, 1_000_000] + \
        list(range(1_050_000, 1_500_001, 50_000))
    assert len(fq) == 15 * 12 and set(fq["chunk"]) == {5} and set(fq["online_steps"]) == {500_000}
    last = fq[fq["step"] == 1_500_000].sort_values("seed", key=lambda s: s.astype(int))
    assert np.allclose(last["score"], 100 * fql[-1], atol=1e-4)
    rlpd = frame[frame["method"] == "RLPD"]
    assert set(rlpd["offline_steps"]) == {0} and set(rlpd["chunk"]) == {1} and len(rlpd) == 10 * 12
    assert set(rlpd["dataset"]) == {"antmaze-large-navigate-v0"}


def _corl_files(root: Path) -> Path:
    def runs(n_off, offset):
        return [(list(np.linspace(0, 40 + offset + s, n_off)), list(np.linspace(50, 90 + offset + s, n_off)),
                 0.1 * (s + 1)) for s in range(4)]
    _dump(root / "results/bin/finetune_scores.pickle",
          {"Cal-QL": {"antmaze-large-diverse-v2": runs(20, 0), "door-cloned-v1": runs(200, 5)},
           "AWAC": {"antmaze-large-diverse-v2": runs(20, 2)}})
    cfgs = {"cal_ql/antmaze/large_diverse_v2": {"offline_iterations": 1_000_000, "online_iterations": 1_000_000,
                                                "eval_freq": 50_000, "n_episodes": 100},
            "cal_ql/door/cloned_v1": {"offline_iterations": 1_000_000, "online_iterations": 1_000_000,
                                      "eval_freq": 5_000, "n_episodes": 10},
            "awac/antmaze/large_diverse_v2": {"offline_iterations": 1_000_000, "online_iterations": 1_000_000,
                                              "eval_frequency": 50_000, "n_test_episodes": 100}}
    for name, cfg in cfgs.items():
        path = root / f"configs/finetune/{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(cfg))
    return root


def test_convert_corl(tmp_path):
    frame = convert_corl(Files(root=_corl_files(tmp_path), commit="abc"))
    scores, regret = frame[frame["metric"] == "normalized_score"], frame[frame["metric"] == "regret"]
    ant = scores[(scores["method"] == "Cal-QL") & (scores["task"] == "antmaze-large-diverse-v2")]
    assert len(ant) == 40 * 4 and ant["step"].max() == 2_000_000 and set(ant["eval_episodes"]) == {100}
    final = ant[ant["step"] == 2_000_000].sort_values("seed")["score"].to_numpy()
    assert np.allclose(final, [90, 91, 92, 93])
    j0 = ant[ant["step"] == 1_000_000]["score"].to_numpy()
    assert np.allclose(sorted(j0), [40, 41, 42, 43])
    door = scores[scores["task"] == "door-cloned-v1"]  # evaluated every 5K: one in ten kept
    assert len(door) == 40 * 4 and set(door["step"] % 50_000) == {0} and set(door["eval_episodes"]) == {10}
    assert set(scores.loc[scores["method"] == "AWAC", "eval_episodes"]) == {100}
    assert sorted(regret.loc[regret["method"] == "Cal-QL", "score"].round(2))[:4] == [0.1, 0.1, 0.2, 0.2]
    assert set(regret["step"]) == {2_000_000}
    assert set(frame["success_timing"]) == set(frame["reward"]) == {"n/a"}


def test_convert_from_git_records_the_commit(tmp_path):
    src = _qc_files(tmp_path / "qc")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}
    for cmd in (["init", "-q"], ["add", "."], ["commit", "-qm", "data"]):
        subprocess.run(["git", "-C", str(src), *cmd], check=True, env=env)
    head = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = tmp_path / "qc.csv"
    r = subprocess.run([sys.executable, "-m", "reports.reference.convert", "qc", "--git", str(src / ".git"),
                        "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    frame = read_reference(out)
    assert set(frame["commit"]) == {head} and len(frame) == 74


def test_pickles_build_arrays_and_nothing_else():
    assert load_pickle(pickle.dumps({("t", "m"): np.arange(3.0)}))[("t", "m")].tolist() == [0, 1, 2]
    with pytest.raises(pickle.UnpicklingError, match="refusing collections.OrderedDict"):
        load_pickle(pickle.dumps(OrderedDict(a=1)))


def test_convert_cli_refuses_missing_files(tmp_path):
    r = subprocess.run([sys.executable, "-m", "reports.reference.convert", "corl", "--dir", str(tmp_path),
                        "--commit", "abc", "--out", str(tmp_path / "x.csv")], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and r.stderr.startswith("error: converting corl:") and len(r.stderr.splitlines()) == 1
    assert not (tmp_path / "x.csv").exists()


# -- the shipped references and names ---------------------------------------------------------------
def task_protocol(task):
    """A task yaml's protocol as the harness composes it (task yamls inherit their domain's parent)."""
    from harness.config import load_group

    return load_group("task", task).protocol


def test_shipped_references_cover_the_ogbench_suite():
    refs = load_references()
    assert set(refs["source"]) >= {"qc", "qam", "corl"}
    assert refs["commit"].str.fullmatch(r"[0-9a-f]{40}").all()
    import tasks

    suite = yaml.safe_load((REPO / "harness/conf/suite/ogbench.yaml").read_text())
    runs = []
    for name in suite["tasks"]:
        p = task_protocol(name)
        stored = tasks.get(name).name  # the run directory's name: a plain name's job is its -post task's
        assert stored == f"{name}-post"
        runs.append({"suite": "ogbench", "task": stored, "algorithm": "iql", "status": "done", "chunk": 1,
                     **{k: p[k] for k in ("offline_steps", "online_steps", "eval_episodes")}})
    m = match_store(pd.DataFrame(runs), refs)
    # the suite's runs have QC's 'post' timing: its IQL number on cube-double is compared; on scene /
    # puzzle-3x3 QC ran its sparse reward, so those differ in the reward alone
    qc = m[m["source"] == "qc"].set_index("task")
    assert set(qc["ref_task"]) == {"cube-double-play-task2", "scene-play-task2", "puzzle-3x3-play-task4"}
    assert set(m.loc[m["comparable"], "task"]) == {"cube-double-play-singletask-post"}
    assert qc.loc["scene-play-singletask-post", "differs"] == "reward (ours dense, reference sparse)"
    assert qc.loc["puzzle-3x3-play-singletask-post", "differs"] == "reward (ours dense, reference sparse)"


def test_shipped_references_match_the_ogbench_qc_suite():
    """QC's suite, by its names ('post', sparse scene / puzzle-3x3, cube-quadruple's 100M data):
    every task has QC's FQL (chunk 1) and QC-FQL (chunk 5) to compare with."""
    refs = load_references()
    suite = yaml.safe_load((REPO / "harness/conf/suite/ogbench-qc.yaml").read_text())
    runs = []
    for task in suite["tasks"]:
        p = task_protocol(task)
        for alg, chunk in (("fql", 1), ("qcfql", 5)):
            runs.append({"suite": "ogbench-qc", "task": task, "algorithm": alg, "status": "done", "chunk": chunk,
                         **{k: p[k] for k in ("offline_steps", "online_steps", "eval_episodes")}})
    m = match_store(pd.DataFrame(runs), refs)
    qc = m[m["comparable"]]
    assert set(qc["source"]) == {"qc"} and len(qc) == 2 * len(suite["tasks"])
    assert set(zip(qc["algorithm"], qc["method"])) == {("fql", "FQL"), ("qcfql", "QC-FQL")}
    quadruple = qc[qc["task"].str.startswith("cube-quadruple")]
    assert set(quadruple["dataset"]) == {"cube-quadruple-play-100m-v0"}
    qam = m[m["source"] == "qam"]  # QAM's ogbench version is not pinned: its timing is unknown
    assert len(qam) and not qam["comparable"].any()
    assert qam["differs"].str.contains("success_timing (ours post, reference unknown)", regex=False).all()


def test_names():
    # a store directory under a plain name of cube-double holds a run made when the name meant 'pre'
    assert our_task("cube-double-play-singletask") == ("cube-double-play-singletask-task2-v0", "cube-double-play-v0",
                                                       "pre", "dense")
    assert our_task("cube-double-play-singletask-task2-post")[2:] == ("post", "dense")
    assert our_task("cube-double-play-singletask-task2-pre")[2:] == ("pre", "dense")
    assert our_task("scene-play-singletask-mini-post")[1:3] == ("scene-play-v0 (mini: generated, 10 episodes)", "post")
    assert our_task("visual-cube-single-play-singletask-task1-post")[:3] == (
        "visual-cube-single-play-singletask-task1-v0", "visual-cube-single-play-v0", "post")
    assert our_task("scene-play-singletask-task2-sparse")[1:] == ("scene-play-v0", "post", "sparse")
    assert our_task("cube-triple-play-singletask-pre")[:3] == ("cube-triple-play-singletask-task2-v0",
                                                               "cube-triple-play-v0", "pre")
    assert our_task("cube-quadruple-play-100m-singletask-task3") == (
        "cube-quadruple-play-singletask-task3-v0", "cube-quadruple-play-100m-v0", "post", "dense")
    assert our_task("puzzle-3x3-play-singletask-task1")[0] == "puzzle-3x3-play-singletask-task1-v0"
    assert our_task("cube-triple-play-singletask-task3")[0] == "cube-triple-play-singletask-task3-v0"
    assert "mini" in our_task("scene-play-singletask-mini")[1]
    assert our_task("antmaze-large-diverse") == ("antmaze-large-diverse-v2", "antmaze-large-diverse-v2", "n/a", "n/a")
    assert our_task("door-binary")[0] == "door-binary-v0" and our_task("pointmaze-umaze-dense")[0] == "pointmaze-umaze-dense"
    assert reference_task("qc", "scene-play-task2") == "scene-play-singletask-task2-v0"
    assert our_method("qam", "FQL", 5) == "qcfql" and our_method("qam", "FQL", 1) == "fql"
    assert our_method("corl", "Cal-QL") == "calql" and our_method("corl", "SPOT") is None


def test_names_agree_with_the_registered_ogbench_tasks():
    """Every OGBench task config: the name's reading (reports never import tasks/) is the task's own;
    an alias's reading is 'pre' (directories under it hold runs made when it meant 'pre'), the
    task it names reads 'post'."""
    from tasks.base import ALIASES, TASKS
    from tasks.ogbench import ENVS, OGBenchTask

    seen = aliases = 0
    for path in sorted((REPO / "harness/conf/task").glob("*.yaml")):
        if path.name.startswith("_"):  # a domain's parent yaml, not a task
            continue
        name = path.stem
        if name.split("-play")[0] not in ENVS:
            continue
        if name in ALIASES:
            aliases += 1
            assert our_task(name).success_timing == "pre" and TASKS[ALIASES[name]].success_timing == "post", name
            assert our_task(name)[:2] == our_task(ALIASES[name])[:2], name  # the same task and dataset
            continue
        task = TASKS[name]
        assert isinstance(task, OGBenchTask), name
        seen += 1
        mine = our_task(name)
        data = task.dataset_name.split("-v0")[0].removeprefix(task.env_name + "-").replace("-100m", "")
        assert mine.task == f"{task.env_name}-{data}-singletask-task{task.task_id}-v0", name
        assert mine.dataset.split(" ")[0] == task.dataset_name, name
        assert (mine.success_timing, mine.reward) == (task.success_timing, "sparse" if task.sparse else "dense"), name
    assert seen == 134 and aliases == 34  # every registered OGBench task and alias has its yaml


# -- the match rule -------------------------------------------------------------------------------
PROTOCOL = {"task": "antmaze-large-diverse-v2", "dataset": "antmaze-large-diverse-v2", "success_timing": "n/a",
            "reward": "n/a", "offline_steps": 1000, "online_steps": 400, "eval_episodes": 20, "chunk": 1}


def test_differences_name_every_field():
    assert differences(PROTOCOL, dict(PROTOCOL)) == []
    for field, other in [("task", "antmaze-large-play-v2"), ("dataset", "D4RL/antmaze/large-diverse-v1"),
                         ("success_timing", "post"), ("reward", "sparse"),
                         ("offline_steps", 2000), ("online_steps", 800), ("eval_episodes", 100), ("chunk", 5)]:
        diff = differences(PROTOCOL, {**PROTOCOL, field: other})
        assert len(diff) == 1 and diff[0].startswith(f"{field} (ours ") and "reference" in diff[0]
    assert differences(PROTOCOL, {**PROTOCOL, "eval_episodes": 100, "chunk": 5}) == [
        "eval_episodes (ours 20, reference 100)", "chunk (ours 1, reference 5)"]
    assert differences({**PROTOCOL, "chunk": float("nan")}, PROTOCOL) == ["chunk (ours unknown, reference 1)"]
    assert differences(PROTOCOL, {**PROTOCOL, "success_timing": float("nan")}) == [
        "success_timing (ours n/a, reference unknown)"]


def test_store_protocol_mixed_runs_never_match():
    runs = pd.DataFrame([{"suite": "s", "task": "antmaze-large-diverse", "algorithm": "iql", "status": "done",
                          "offline_steps": 1000, "online_steps": 400, "eval_episodes": e, "chunk": 1} for e in (20, 50)])
    row = store_protocols(runs).iloc[0]
    assert np.isnan(row["eval_episodes"]) and row["offline_steps"] == 1000


# -- the report -----------------------------------------------------------------------------------
REF_FINALS = [60.0, 62.0, 64.0, 66.0]


def _reference_csv(folder: Path) -> Path:
    """A per-seed reference for iql on antmaze-large-diverse with the synthetic store's protocol,
    and one for cql evaluated on 100 episodes (not comparable)."""
    rows = []
    for method, episodes in (("IQL", 20), ("CQL", 100)):
        for seed, final in enumerate(REF_FINALS):
            for step, score in ((1000, 50.0), (1200, 55.0), (1400, final)):
                rows.append({"source": "corl", "repository": "o/r", "commit": "f" * 40, "file": "f.pkl",
                             "key": f"({method!r}, {seed})", "method": method, "task": "antmaze-large-diverse-v2",
                             "dataset": "antmaze-large-diverse-v2", "success_timing": "n/a", "reward": "n/a",
                             "offline_steps": 1000, "online_steps": 400,
                             "eval_episodes": episodes, "chunk": 1, "metric": "normalized_score", "step": step,
                             "seed": str(seed), "score": score, "notes": ""})
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=COLUMNS).to_csv(folder / "corl.csv", index=False)
    return folder


def _store(root: Path, finals) -> Path:
    return synthetic.write_final_scores_store(
        root, {("iql", "antmaze-large-diverse"): finals, ("cql", "antmaze-large-diverse"): finals}, offline=50.0)


@pytest.mark.parametrize("finals, verdict", [([61.0, 63.0, 65.0, 67.0], "agree"), ([20.0, 22.0, 24.0, 26.0], "DISAGREE")])
def test_report_against_a_reference(tmp_path, finals, verdict):
    refs = _reference_csv(tmp_path / "refs")
    store = _store(tmp_path / "store", finals)
    index = reports.build_report(store, tmp_path / "out", reps=300, references=refs)
    out = index.parent
    agreed = pd.read_csv(out / "references_agreement.csv")
    assert len(agreed) == 1  # iql compared; cql's reference is not comparable
    row = agreed.iloc[0]
    assert (row["algorithm"], row["method"], row["verdict"]) == ("iql", "IQL", verdict)
    assert row["ours_final"] == pytest.approx(np.mean(finals)) and row["ref_final"] == pytest.approx(np.mean(REF_FINALS))
    # the published CI comes from the same bootstrap helper as ours
    lo, hi = bootstrap_ci(np.array(REF_FINALS)[:, None], lambda x, axis: x.mean(axis=axis), 300, 0)
    assert (row["ref_lo"], row["ref_hi"]) == pytest.approx((lo[0], hi[0]))
    page = index.read_text()
    assert "Agreement with published results" in page and verdict in page
    assert ("comparison(s) disagree with the published result" in page) == (verdict == "DISAGREE")
    assert "eval_episodes (ours 20, reference 100)" in page.split("not compared")[1]
    curves = pd.read_csv(out / "references_curves.csv")
    assert set(curves["side"]) == {"ours", "published"} and curves["panel"].str.startswith("aggregate").any()
    pub = curves[(curves["side"] == "published") & (curves["panel"] == "antmaze-large-diverse")]
    assert pub["mean"].iloc[0] == pytest.approx(50.0) and pub["mean"].iloc[-1] == pytest.approx(np.mean(REF_FINALS))
    ours = curves[(curves["side"] == "ours") & (curves["panel"] == "antmaze-large-diverse")]
    assert ours["mean"].iloc[-1] == pytest.approx(np.mean(finals))
    png = out / "figures" / "references.png"
    assert mpimg.imread(png)[..., :3].var() > 1e-3 and 'src="figures/references.png"' in page


def test_cli_lists_references(tmp_path):
    refs = _reference_csv(tmp_path / "refs")
    store = _store(tmp_path / "store", [61.0, 63.0])
    r = subprocess.run([sys.executable, "-m", "reports", str(store), "--references", "--reference-dir", str(refs)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(line.startswith("s/antmaze-large-diverse iql <- corl IQL") and line.endswith(": comparable") for line in lines)
    assert any("cql <- corl CQL" in line and "not comparable: eval_episodes (ours 20, reference 100)" in line
               for line in lines)
    assert lines[-1] == "1 comparable, 1 not comparable" and not (store / "report").exists()


def test_bad_reference_file_is_refused_in_one_line(tmp_path):
    refs = _reference_csv(tmp_path / "refs")
    frame = pd.read_csv(refs / "corl.csv").drop(columns=["chunk"])
    frame.to_csv(refs / "corl.csv", index=False)
    with pytest.raises(ReferenceError, match="lacks column\\(s\\) chunk"):
        load_references(refs)
    store = _store(tmp_path / "store", [61.0, 63.0])
    r = subprocess.run([sys.executable, "-m", "reports", str(store), "--reference-dir", str(refs)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "lacks column(s) chunk" in r.stderr
    assert not (store / "report").exists()


# -- OGBench: success timing and reward variant, from our task names ----------------------------------
# the plain names: directories of runs made when those names meant 'pre' (they are now aliases of -post)
OGB_STORE = ["cube-double-play-singletask-task2", "cube-double-play-singletask-task2-post",
             "scene-play-singletask-task2", "scene-play-singletask-task2-sparse"]


def _qc_reference_csv(folder: Path) -> Path:
    """QC-style aggregate rows for IQL on cube-double task2 (dense) and scene task2 (sparse),
    'post' timing, with the synthetic store's budgets and evaluation."""
    rows = []
    for task, dataset, reward in (("cube-double-play-task2", "cube-double-play-v0", "dense"),
                                  ("scene-play-task2", "scene-play-v0", "sparse")):
        for step, score in ((1000, 50.0), (1400, 64.0)):
            rows.append({"source": "qc", "repository": "o/qc", "commit": "e" * 40, "file": "plot.pkl",
                         "key": repr((task, "IQL")), "method": "IQL", "task": task, "dataset": dataset,
                         "success_timing": "post", "reward": reward, "offline_steps": 1000, "online_steps": 400,
                         "eval_episodes": 20, "chunk": 1, "metric": "normalized_score", "step": step,
                         "seed": "aggregate", "score": score, "ci_low": score - 5, "ci_high": score + 5})
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=COLUMNS).to_csv(folder / "qc.csv", index=False)
    return folder


def test_ogbench_timing_and_reward_decide_the_match(tmp_path):
    refs = load_references(_qc_reference_csv(tmp_path / "refs"))
    store = synthetic.write_final_scores_store(tmp_path / "store", {("iql", t): [60.0, 62.0] for t in OGB_STORE},
                                               domain="ogbench")
    m = match_store(load_store(store).runs, refs).set_index("task")
    assert m["comparable"].to_dict() == {"cube-double-play-singletask-task2": False,
                                         "cube-double-play-singletask-task2-post": True,
                                         "scene-play-singletask-task2": False,
                                         "scene-play-singletask-task2-sparse": True}
    assert m.loc["cube-double-play-singletask-task2", "differs"] == "success_timing (ours pre, reference post)"
    index = reports.build_report(store, tmp_path / "out", reps=100, references=tmp_path / "refs")
    table = (index.parent / "references_tables.md").read_text()  # the compared tasks show their timing
    assert "| cube-double-play-singletask-task2-post (post) | iql |" in table
    assert "| scene-play-singletask-task2-sparse (post) | iql |" in table and "task2 (pre)" not in table
    assert m.loc["scene-play-singletask-task2", "differs"] == \
        "success_timing (ours pre, reference post); reward (ours dense, reference sparse)"


def test_cli_names_the_differing_ogbench_field(tmp_path):
    refs = _qc_reference_csv(tmp_path / "refs")
    store = synthetic.write_final_scores_store(tmp_path / "store", {("iql", t): [60.0, 62.0] for t in OGB_STORE},
                                               domain="ogbench")
    r = subprocess.run([sys.executable, "-m", "reports", str(store), "--references", "--reference-dir", str(refs)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    lines = {line.split(" <- ")[0]: line for line in r.stdout.splitlines() if " <- " in line}
    assert lines["s/cube-double-play-singletask-task2 iql"].endswith(
        "not comparable: success_timing (ours pre, reference post)")
    assert lines["s/cube-double-play-singletask-task2-post iql"].endswith("; success_timing post): comparable")
    assert "reward (ours dense, reference sparse)" in lines["s/scene-play-singletask-task2 iql"]
    assert lines["s/scene-play-singletask-task2-sparse iql"].endswith(": comparable")
    assert r.stdout.splitlines()[-1] == "2 comparable, 2 not comparable"
