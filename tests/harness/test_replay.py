"""Monte-Carlo returns on hand-built trajectories, and how batches are mixed."""
import numpy as np
import pytest
import torch

from harness.replay import Replay, mc_returns

GAMMA = 0.9


def test_mc_returns_per_trajectory_without_bootstrap():
    reward = np.array([1.0, 0.0, 2.0, 5.0, 1.0])
    ends = np.array([False, False, True, False, True])
    expected = [1 + GAMMA * 0 + GAMMA**2 * 2, 0 + GAMMA * 2, 2, 5 + GAMMA * 1, 1]
    np.testing.assert_allclose(mc_returns(reward, ends, GAMMA), expected, rtol=1e-6)


def test_failed_sparse_trajectory_gets_the_value_of_failing_forever():
    # trajectory 1 never succeeds (all -5); trajectory 2 succeeds at its end (+5)
    reward = np.array([-5.0, -5.0, -5.0, -5.0, 5.0])
    ends = np.array([False, False, True, False, True])
    out = mc_returns(reward, ends, GAMMA, fail_reward=-5.0)
    np.testing.assert_allclose(out[:3], -5.0 / (1 - GAMMA))
    np.testing.assert_allclose(out[3:], [-5 + GAMMA * 5, 5.0], rtol=1e-6)
    # without the rule the truncated failure looks better towards its end
    plain = mc_returns(reward, ends, GAMMA)
    assert plain[2] == pytest.approx(-5.0)


def test_last_row_closes_an_open_trajectory():
    out = mc_returns(np.array([1.0, 1.0]), np.array([False, False]), GAMMA)
    np.testing.assert_allclose(out, [1 + GAMMA, 1])


def offline(n, obs_value=0.0):
    return {"obs": np.full((n, 2), obs_value), "action": np.zeros((n, 1)), "reward": np.zeros(n),
            "next_obs": np.zeros((n, 2)), "done": np.zeros(n), "mc_return": np.zeros(n)}


def fill_online(replay, steps, obs_value=1.0):
    for t in range(steps):
        replay.add(np.full(2, obs_value), np.zeros(1), 1.0, np.full(2, obs_value), False, t == steps - 1)


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 1.0])
def test_mix_mode_draws_the_configured_offline_fraction(ratio):
    replay = Replay(offline(1000), 500, torch.device("cpu"), GAMMA, None)
    fill_online(replay, 100)
    b = replay.sample(256, "mix", ratio, with_mc_return=False)
    assert b.obs.shape == (1, 256, 2)  # one seed's batch
    assert (b.obs[0, :, 0] == 0).sum().item() == round(ratio * 256)
    assert b.mc_return is None


def test_append_mode_samples_uniformly_over_both():
    torch.manual_seed(0)
    replay = Replay(offline(300), 500, torch.device("cpu"), GAMMA, None)
    fill_online(replay, 100)
    frac = np.mean([(replay.sample(256, "append", 0.5, False).obs[0, :, 0] == 0).float().mean().item()
                    for _ in range(200)])
    assert frac == pytest.approx(300 / 400, abs=0.01)


def test_online_mode_drops_the_offline_data():
    replay = Replay(offline(300), 500, torch.device("cpu"), GAMMA, None)
    assert not replay.can_sample("online") and replay.can_sample("mix") and replay.can_sample("append")
    with pytest.raises(RuntimeError, match="no online data yet"):
        replay.sample(8, "online", 0.5, False)
    replay.add(np.ones(2), np.zeros(1), 1.0, np.ones(2), False, False)  # its trajectory has not ended
    assert not replay.can_sample("online")
    fill_online(replay, 40)
    assert replay.can_sample("online")
    b = replay.sample(4096, "online", 0.5, with_mc_return=True)
    assert (b.obs[0, :, 0] == 1).all() and b.mc_return is not None  # online rows only
    assert len(set(b.mc_return[0].tolist())) > 1  # and spread over the online rows


def test_online_mode_in_a_group_waits_for_every_active_seed():
    """Seeds of a group update together: online batches once each seed has online data; a failed
    seed (its update discarded) does not hold the others back."""
    from algorithms import SeedStreams

    replay = Replay(offline(300), 500, torch.device("cpu"), GAMMA, None, n_seeds=2)
    for t in range(5):
        replay.add(np.full(2, 7.0), np.zeros(1), 1.0, np.full(2, 7.0), False, t == 4, k=1)
    assert not replay.can_sample("online") and replay.can_sample("online", [False, True])
    with pytest.raises(RuntimeError, match="no online data yet"):
        replay.sample(8, "online", 0.5, False, SeedStreams.from_seeds([0, 1]))
    b = replay.sample(64, "online", 0.5, False, SeedStreams.from_seeds([0, 1]), active=[False, True])
    assert (b.obs[1, :, 0] == 7.0).all()  # seed 1: its own online rows only


def test_online_steps_enter_with_their_returns_when_the_trajectory_ends():
    replay = Replay(offline(10), 50, torch.device("cpu"), GAMMA, fail_reward=-1.0)
    replay.add([1, 1], [0], 2.0, [1, 1], False, False)
    assert replay.n_online == [0]  # still pending: its return is not known yet
    b = replay.sample(64, "mix", 0.5, True)
    assert (b.obs[0, :, 0] == 0).all()  # all offline while no online trajectory has ended
    replay.add([1, 1], [0], 3.0, [1, 1], True, True)
    assert replay.n_online == [2]
    np.testing.assert_allclose(replay.storage["mc_return"][10:12].numpy(), [2 + GAMMA * 3, 3])
    np.testing.assert_allclose(replay.storage["done"][10:12].numpy(), [0, 1])
    fill_online(replay, 3, obs_value=2.0)  # rewards 1: not a failure
    replay.add([3, 3], [0], -1.0, [3, 3], False, True)
    assert replay.storage["mc_return"][15].item() == pytest.approx(-1.0 / (1 - GAMMA))


def test_a_dataset_becomes_the_offline_part_with_transformed_rewards_and_their_returns():
    """Rewards through the job's transform, the task's fail reward transformed alike: a failed
    trajectory's returns are the transformed failure forever, online ones follow the same rule."""
    from harness.job import RewardTransform
    from tasks.base import Dataset

    reward = np.array([0.0, 0.0, 0.0, 0.0, 1.0], np.float32)  # a failure (steps 0-2), then a success
    terminal, timeout = np.array([0, 0, 0, 0, 1], bool), np.array([0, 0, 1, 0, 0], bool)
    obs = np.arange(10, dtype=np.float32).reshape(5, 2)
    data = Dataset(obs, np.zeros((5, 1), np.float32), reward, obs + 1, terminal, timeout)
    replay = Replay.from_dataset(data, 4, torch.device("cpu"), GAMMA, fail_reward=0.0, n_seeds=2,
                                 reward_transform=RewardTransform(scale=10.0, shift=-5.0))
    assert replay.n_offline == 5 and replay.capacity == 5 + 2 * 4 and replay.fail_reward == -5.0
    np.testing.assert_array_equal(replay.storage["reward"][:5].numpy(), 10 * reward - 5)
    np.testing.assert_array_equal(replay.storage["obs"][:5].numpy(), obs)
    np.testing.assert_array_equal(replay.storage["next_obs"][:5].numpy(), obs + 1)
    np.testing.assert_array_equal(replay.storage["done"][:5].numpy(), [0, 0, 0, 0, 1])
    np.testing.assert_allclose(replay.storage["mc_return"][:5].numpy(), [-5 / (1 - GAMMA)] * 3 + [-5 + GAMMA * 5, 5],
                               rtol=1e-6)
    plain = Replay.from_dataset(data, 0, torch.device("cpu"), GAMMA)  # as recorded, dense
    np.testing.assert_array_equal(plain.storage["reward"].numpy(), reward)
    np.testing.assert_allclose(plain.storage["mc_return"][:3].numpy(), [0, 0, 0])
    assert plain.fail_reward is None and plain.capacity == 5


def test_online_buffer_refuses_to_overflow():
    replay = Replay(offline(10), 3, torch.device("cpu"), GAMMA, None)
    with pytest.raises(RuntimeError, match="online buffer full"):
        fill_online(replay, 4)


def test_each_seed_samples_its_own_online_data_from_its_own_stream():
    """Seed k's online rows live in its own region; its batches come from stream k alone."""
    from algorithms import SeedStreams

    replay = Replay(offline(100), 50, torch.device("cpu"), GAMMA, None, n_seeds=3)
    for k in range(3):
        for t in range(10):
            replay.add(np.full(2, 10.0 + k), np.zeros(1), 1.0, np.full(2, 10.0 + k), False, t == 9, k)
    assert replay.n_online == [10, 10, 10]
    b = replay.sample(64, "mix", 0.5, False, SeedStreams.from_seeds([5, 6, 7]))
    assert b.obs.shape == (3, 64, 2)
    for k in range(3):
        online = b.obs[k, :, 0][b.obs[k, :, 0] != 0]
        assert len(online) == 32 and (online == 10.0 + k).all()  # only its own online rows
    alone = replay.sample(64, "mix", 0.5, False, SeedStreams.from_seeds([6]))  # seed 6 of the group, alone
    again = replay.sample(64, "mix", 0.5, False, SeedStreams.from_seeds([5, 6, 7]))
    assert torch.equal(alone.obs[0, :32], again.obs[1, :32])  # same offline rows: the same stream


def test_checkpoint_holds_only_the_filled_online_rows():
    """A slice is a view: saved as is, it would carry the whole preallocated buffer, offline data included."""
    import io

    replay = Replay(offline(20_000), 100_000, torch.device("cpu"), GAMMA, None)
    sizes = []
    for n in (0, 100):
        if n:
            fill_online(replay, n)
        buf = io.BytesIO()
        torch.save(replay.online_state(), buf)
        sizes.append(len(buf.getvalue()))
    row_bytes = sum(v[0].numel() * v.element_size() for v in replay.storage.values())
    assert sizes[0] < 10_000 and sizes[1] - sizes[0] < 2 * 100 * row_bytes  # full storage: 120,000 rows
    state = replay.online_state()
    restored = Replay(offline(20_000), 100_000, torch.device("cpu"), GAMMA, None)
    restored.load_online_state(state)
    for key, value in replay.storage.items():
        torch.testing.assert_close(restored.storage[key][:20_100], value[:20_100])


# -- action chunks (h > 1): QC's sample_sequence, stopped at episode ends -----------------------------

def chunk_dataset():
    """8 steps, obs[t] = (t, t), a_t = (t, -t), r_t = t + 1; episode ends: a time-out at step 2, a
    true terminal at step 5, the data's end at step 7."""
    from tasks.base import Dataset

    t = np.arange(8, dtype=np.float32)
    obs = np.stack([t, t], 1)
    terminal, timeout = np.zeros(8, bool), np.zeros(8, bool)
    timeout[2], terminal[5] = True, True
    return Dataset(obs, np.stack([t, -t], 1), t + 1, obs + 0.5, terminal, timeout)


def rows_by_start(batch):
    """{start step t: (reward, done, next_obs[0], valid, action)} of a one-seed batch."""
    out = {}
    for i, t in enumerate(batch.obs[0, :, 0].tolist()):
        out[int(t)] = (batch.reward[0, i].item(), batch.done[0, i].item(), batch.next_obs[0, i, 0].item(),
                       batch.valid[0, i].tolist(), batch.action[0, i].tolist())
    return out


def test_a_chunk_sums_its_transformed_rewards_up_to_the_episode_end_and_masks_the_rest():
    """h = 3, gamma 0.9, rewards through the job's transform (2r - 1) per step: every start below
    8 - 3 + 1 = 6 drawn, none later (the chunk would run past the data's end)."""
    from harness.job import RewardTransform

    replay = Replay.from_dataset(chunk_dataset(), 10, torch.device("cpu"), GAMMA, n_seeds=1,
                                 reward_transform=RewardTransform(scale=2.0, shift=-1.0), chunk=3)
    torch.manual_seed(0)
    got = rows_by_start(replay.sample(400, "mix", 1.0, with_mc_return=True))
    assert sorted(got) == [0, 1, 2, 3, 4, 5]
    r = lambda t: 2 * (t + 1) - 1  # noqa: E731 (the transformed reward of step t)
    expected = {  # start: (reward sum, done, next_obs of step t+2, valid)
        0: (r(0) + GAMMA * r(1) + GAMMA**2 * r(2), 0.0, 2.5, [1, 1, 1]),  # ends at its last step (time-out)
        1: (r(1) + GAMMA * r(2), 0.0, 3.5, [1, 1, 0]),  # time-out at its 2nd step: the 3rd is masked
        2: (r(2), 0.0, 4.5, [1, 0, 0]),
        3: (r(3) + GAMMA * r(4) + GAMMA**2 * r(5), 1.0, 5.5, [1, 1, 1]),  # terminal on its last step
        4: (r(4) + GAMMA * r(5), 1.0, 6.5, [1, 1, 0]),  # terminal at its 2nd step
        5: (r(5), 1.0, 7.5, [1, 0, 0]),
    }
    for t, (reward, done, next_obs, valid) in expected.items():
        assert got[t][0] == pytest.approx(reward, rel=1e-6), t
        assert (got[t][1], got[t][2], got[t][3]) == (done, next_obs, valid), t
        assert got[t][4] == [t, -t, t + 1, -(t + 1), t + 2, -(t + 2)]  # a_t..a_{t+2} flattened, masked ones too
    b = replay.sample(16, "mix", 1.0, with_mc_return=True)
    assert b.action.shape == (1, 16, 6) and b.valid.shape == (1, 16, 3) and b.reward.shape == (1, 16)
    assert b.valid.dtype == torch.float32 and b.mc_return is not None  # obs_t's return-to-go
    np.testing.assert_array_equal(b.mc_return[0].numpy(), replay.storage["mc_return"][b.obs[0, :, 0].long()].numpy())


def test_with_h_1_a_batch_is_the_one_step_transition_without_valid():
    replay = Replay.from_dataset(chunk_dataset(), 10, torch.device("cpu"), GAMMA)
    b = replay.sample(64, "mix", 1.0, False)
    t = b.obs[0, :, 0].long()
    assert b.valid is None and sorted(set(t.tolist())) == list(range(8))
    np.testing.assert_array_equal(b.reward[0].numpy(), (t + 1).numpy())
    np.testing.assert_array_equal(b.action[0].numpy(), torch.stack([t, -t], 1).numpy())


def test_chunks_never_cross_the_end_of_a_stored_segment():
    """Offline data, then each seed's online rows: a chunk lies inside the offline data or inside one
    seed's stored online rows (never the not-yet-stored pending steps), in every mode."""
    from algorithms import SeedStreams

    h = 4
    replay = Replay(offline(50, obs_value=0.0), 100, torch.device("cpu"), GAMMA, None, n_seeds=2, chunk=h)
    replay.storage["obs"][:50, 1] = torch.arange(50.0)
    assert not replay.can_sample("online")
    for k in range(2):
        for t in range(h - 1):  # one ended trajectory shorter than a chunk: no chunk yet
            replay.add([10.0 + k, t], [0], 1.0, [10.0 + k, t], False, t == h - 2, k)
    assert replay.n_online == [h - 1] * 2 and not replay.can_sample("online")
    with pytest.raises(RuntimeError, match="fewer than 4 online steps"):
        replay.sample(8, "online", 0.5, False, SeedStreams.from_seeds([0, 1]))
    b = replay.sample(256, "mix", 0.5, False, SeedStreams.from_seeds([0, 1]))
    assert (b.obs[..., 0] == 0).all()  # all offline while no online chunk fits
    for k in range(2):  # a second trajectory (ended), and steps of a third still pending
        for t in range(h - 1, 2 * h):
            replay.add([10.0 + k, t], [0], 1.0, [10.0 + k, t], False, t == 2 * h - 1, k)
        for t in range(2 * h, 2 * h + 3):
            replay.add([10.0 + k, t], [0], 1.0, [10.0 + k, t], False, False, k)
    assert replay.n_online == [2 * h] * 2 and replay.can_sample("online")
    for mode in ("mix", "append", "online"):
        b = replay.sample(4096, mode, 0.5, False, SeedStreams.from_seeds([3, 4]))
        for k in range(2):
            src, t = b.obs[k, :, 0], b.obs[k, :, 1]
            off, on = t[src == 0], t[src == 10.0 + k]
            assert len(off) + len(on) == 4096  # offline rows, or seed k's own online rows
            if mode != "online":
                assert off.max() == 50 - h and off.min() == 0
            assert on.max() == 2 * h - h and on.min() == 0  # the pending steps 8..10 never start or end a chunk
            assert (b.next_obs[k, src == 10.0 + k, 1] == on + h - 1).all()  # the chunk's last stored step
    with pytest.raises(ValueError, match="fewer than one action chunk"):
        Replay(offline(3), 10, torch.device("cpu"), GAMMA, None, chunk=4)


def test_online_chunks_mask_after_the_episode_end_and_keep_the_true_terminal():
    """A seed's online data: two trajectories, the first ending in a true terminal at its 3rd step;
    a chunk from its 2nd step holds the next trajectory's first steps, masked."""
    replay = Replay(offline(20), 50, torch.device("cpu"), GAMMA, None, chunk=3)
    for t, (r, term, end) in enumerate([(1.0, False, False), (2.0, False, False), (3.0, True, True),
                                        (4.0, False, False), (5.0, False, True)]):
        replay.add([1.0, t], [t], r, [1.0, t + 0.5], term, end)
    torch.manual_seed(1)
    b = replay.sample(512, "online", 0.5, False)
    got = {int(t): i for i, t in enumerate(b.obs[0, :, 1].tolist())}
    assert sorted(got) == [0, 1, 2]  # 5 stored steps, chunks of 3
    for t, (reward, done, valid) in {0: (1 + GAMMA * 2 + GAMMA**2 * 3, 1.0, [1, 1, 1]),
                                     1: (2 + GAMMA * 3, 1.0, [1, 1, 0]),
                                     2: (3.0, 1.0, [1, 0, 0])}.items():
        i = got[t]
        assert b.reward[0, i].item() == pytest.approx(reward, rel=1e-6)
        assert b.done[0, i].item() == done and b.valid[0, i].tolist() == valid
        assert b.action[0, i].tolist() == [t, t + 1, t + 2] and b.next_obs[0, i, 1].item() == t + 2.5


def test_a_chunked_replay_checkpoint_restores_the_episode_ends():
    replay = Replay(offline(20), 50, torch.device("cpu"), GAMMA, None, chunk=2)
    fill_online(replay, 5)
    fill_online(replay, 3)
    restored = Replay(offline(20), 50, torch.device("cpu"), GAMMA, None, chunk=2)
    restored.load_online_state(replay.online_state())
    assert restored.storage["episode_end"][20:28].tolist() == [False] * 4 + [True] + [False] * 2 + [True]
    torch.manual_seed(2)
    a = replay.sample(64, "online", 0.5, True)
    torch.manual_seed(2)
    b = restored.sample(64, "online", 0.5, True)
    for f in ("obs", "action", "reward", "next_obs", "done", "mc_return", "valid"):
        assert torch.equal(getattr(a, f), getattr(b, f))
