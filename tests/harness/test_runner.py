"""The runner's resume path when an env does not replay its unfinished episode: the run fails
with EnvReplayMismatch naming the seed and the step, and its summary records why."""
import json

import numpy as np
import pytest
import torch

from harness.runner import EnvReplayMismatch, Interrupted, Runner, run_job
from tests.harness.test_warmup import TINY, make_job


def test_resume_whose_env_does_not_replay_its_episode_fails_with_the_intended_error(tmp_path):
    job = make_job("rlpd", {**TINY, "actor_every": 1}, online_steps=700, warmup_steps=650,
                   warmup_policy="uniform", checkpoint_every=1)
    polls = []

    def stop_at_the_second_env_step():
        polls.append(True)
        return len(polls) == 2

    with pytest.raises(Interrupted):
        Runner([job], [tmp_path], progress_bar=False, stop_requested=stop_at_the_second_env_step).run()
    ckpt = tmp_path / "checkpoint" / "state.pt"
    payload = torch.load(ckpt, weights_only=False)
    pending = payload["replay"]["pending"][0]
    assert len(pending) == 2  # the unfinished episode's two steps, replayed on resume
    obs, action, reward, next_obs, done = pending[0]
    # the env given another first action than it took: it no longer reaches the recorded second observation
    pending[0] = (obs, np.clip(-action, -1, 1) if np.abs(action).max() > 0.1 else np.ones_like(action), reward,
                  next_obs, done)
    torch.save(payload, ckpt)

    with pytest.raises(EnvReplayMismatch, match=r"seed 0: the env's observation at step 1 of its unfinished "
                                                r"episode differs from the checkpoint's"):
        run_job(job, tmp_path, progress_bar=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"].startswith("EnvReplayMismatch: seed 0")
