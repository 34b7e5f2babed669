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
