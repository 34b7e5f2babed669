"""visual-pick-place: headless rendering, the observation layout, the fixed single goal, the
scripted dataset's success rate (the default recipe), determinism and the Minari round trip."""
import numpy as np
import pytest

import tasks
from tasks.fetch import HORIZON, PROPRIO, DatasetRecipe, VisualPickPlaceTask, pack_obs, unpack_obs


@pytest.fixture(scope="module")
def small_task():
    return VisualPickPlaceTask("visual-pick-place-test16", image_size=16, recipe=DatasetRecipe(episodes=3, seed=1))


def test_registered_with_image_spec():
    t = tasks.get("visual-pick-place")
    assert t.image_shape == (3, 64, 64) and t.vector_dim == 10 and t.act_dim == 4
    assert t.obs_dim == 3 * 64 * 64 + 4 * 10 and t.domain == "visual" and t.fail_reward == 0.0


def test_pack_unpack_round_trip():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    state = rng.standard_normal((5, 10)).astype(np.float32)
    rows = pack_obs(img, state)
    assert rows.dtype == np.uint8 and rows.shape == (5, 3 * 64 + 40)
    img2, state2 = unpack_obs(rows, (3, 8, 8))
    np.testing.assert_array_equal(img2, np.moveaxis(img, -1, 1))
    np.testing.assert_array_equal(state2, state)


def test_env_renders_headless_and_keeps_one_goal(small_task):
    env = small_task.make_env(0)
    try:
        obs, info = env.reset(seed=0)
        assert obs.dtype == np.uint8 and obs.shape == (small_task.obs_dim,) and env.observation_space.contains(obs)
        image, state = unpack_obs(obs, small_task.image_shape)
        assert image.std() > 5  # a real picture, not a blank buffer
        np.testing.assert_allclose(state, info["state"][PROPRIO], rtol=1e-6)
        target = env.unwrapped.goal.copy()
        starts = []
        for seed in range(3):
            _, info = env.reset(seed=seed)
            np.testing.assert_array_equal(env.unwrapped.goal, target)
            starts.append(info["state"][3:5])
        assert 0 < np.ptp(np.array(starts), 0).max() <= 0.04  # small start noise only
        length, done = 0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            assert isinstance(info["success"], bool) and reward == float(info["success"])
            length += 1
            done = terminated or truncated
        assert length <= HORIZON and (terminated or length == HORIZON)
    finally:
        env.close()


def test_default_dataset_success_rate_in_range():
    """The controller does not look at images: a state-only rollout of the default recipe gives
    exactly the default dataset's episodes, hence its success rate."""
    t = tasks.get("visual-pick-place")
    episodes = t.collect(render=False)
    assert len(episodes) == t.recipe.episodes
    rate = np.mean([any(ep["terminal"]) for ep in episodes])
    assert 0.3 <= rate <= 0.5, rate
    modes = {ep["mode"] for ep in episodes}
    assert modes == {"clean", "miss", "drop", "wrong"}


def test_generation_is_deterministic_and_round_trips(small_task):
    a = small_task.collect()
    b = small_task.collect()
    for ea, eb in zip(a, b):
        np.testing.assert_array_equal(np.stack(ea["obs"]), np.stack(eb["obs"]))
        np.testing.assert_array_equal(np.stack(ea["action"]), np.stack(eb["action"]))
    small_task.generate()
    data = small_task.load_dataset()
    data.validate("test", small_task.obs_dim, small_task.act_dim)
    assert data.obs.dtype == np.uint8 and data.next_obs.dtype == np.uint8 and data.action.dtype == np.float32
    assert len(data) == sum(len(ep["action"]) for ep in a)
    np.testing.assert_array_equal(data.obs[0], a[0]["obs"][0])
    np.testing.assert_array_equal(data.reward, np.concatenate([ep["reward"] for ep in a]))
    assert (data.terminal == (data.reward == 1)).all()
