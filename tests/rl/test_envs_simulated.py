"""Simulator-backed meta-RL families: gymnasium/MuJoCo locomotion, RandParams, Meta-World.

Skipped cleanly without gymnasium + mujoco (and the Meta-World tests without metaworld).
Every test steps a handful of entries for a few steps, so the file runs in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

gym = pytest.importorskip("gymnasium")
pytest.importorskip("mujoco")

from metabridge.rl.envs.mujoco_locomotion import AntDir, AntVel, HalfCheetahDir, HalfCheetahVel  # noqa: E402
from metabridge.rl.envs.rand_params import HalfCheetahRandParams, HopperRandParams, Walker2DRandParams  # noqa: E402

LOCOMOTION = [HalfCheetahVel, HalfCheetahDir, AntVel, AntDir]
RAND_PARAMS = [HopperRandParams, Walker2DRandParams, HalfCheetahRandParams]
DIMS = {  # (obs_dim, action_dim) of the gymnasium v5 robots
    HalfCheetahVel: (17, 6),
    HalfCheetahDir: (17, 6),
    AntVel: (105, 8),
    AntDir: (105, 8),
    HopperRandParams: (11, 3),
    Walker2DRandParams: (17, 6),
    HalfCheetahRandParams: (17, 6),
}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rollout(env, seed: int, tasks: int = 2, rollouts: int = 2, steps: int = 5):
    """Sample tasks, reset and step with random actions, all from one generator."""
    g = _gen(seed)
    task = env.sample_tasks(tasks, g)
    obs = [env.reset(task, rollouts, g)]
    rewards = []
    for _ in range(steps):
        res = env.step(torch.randn(tasks, rollouts, env.action_dim, generator=g))
        obs.append(res.observation)
        rewards.append(res.reward)
    return task, torch.stack(obs), torch.stack(rewards)


def _plain_copy(gym_id: str, state: dict) -> object:
    """A plain ``gymnasium.make`` env put in the physical state of one of our entries
    (``qpos``/``qvel``, and the solver warm start that ``mj_forward`` leaves, so that the
    comparison can be bit-for-bit)."""
    plain = gym.make(gym_id)
    plain.reset(seed=123)
    plain.unwrapped.set_state(state["qpos"], state["qvel"])
    plain.unwrapped.data.qacc_warmstart[:] = state["qacc_warmstart"]
    return plain


@pytest.mark.parametrize("cls", LOCOMOTION + RAND_PARAMS, ids=lambda c: c.__name__)
def test_shapes_and_dtypes(cls) -> None:
    env = cls(horizon=10)
    obs_dim, action_dim = DIMS[cls]
    assert (env.obs_dim, env.action_dim) == (obs_dim, action_dim)
    assert env.action_low.shape == (action_dim,) and env.action_high.shape == (action_dim,)
    g = _gen(0)
    tasks = env.sample_tasks(3, g)
    assert tasks.shape == (3, env.task_dim) and tasks.dtype == torch.float32
    obs = env.reset(tasks, 2, g)
    assert obs.shape == (3, 2, obs_dim) and obs.dtype == torch.float32
    res = env.step(torch.zeros(3, 2, action_dim))
    assert res.observation.shape == (3, 2, obs_dim) and res.observation.dtype == torch.float32
    assert res.reward.shape == (3, 2) and res.reward.dtype == torch.float32
    assert res.done.shape == (3, 2) and res.done.dtype == torch.bool
    assert res.success is None and not env.has_success
    assert isinstance(env.describe_task(tasks[0]), str)
    env.close()


def test_halfcheetah_vel_reward_matches_plain_gymnasium() -> None:
    env = HalfCheetahVel()
    g = _gen(1)
    tasks = torch.tensor([[0.5], [1.7]])
    env.reset(tasks, 1, g)
    plain = _plain_copy("HalfCheetah-v5", env.entry_state(1, 0))
    data, dt = plain.unwrapped.data, plain.unwrapped.dt
    for _ in range(25):
        a = torch.rand(2, 1, 6, generator=g) * 2 - 1
        res = env.step(a)
        act = a[1, 0].numpy()
        x_before = float(data.qpos[0])
        obs, _, terminated, _, info = plain.step(act)
        assert info["x_velocity"] == pytest.approx((float(data.qpos[0]) - x_before) / dt, abs=1e-12)
        expected = -abs(info["x_velocity"] - 1.7) - 0.05 * float(np.square(act.astype(np.float64)).sum())
        assert float(res.reward[1, 0]) == pytest.approx(expected, abs=1e-5)
        np.testing.assert_allclose(res.observation[1, 0].numpy(), obs, atol=1e-5)
        np.testing.assert_array_equal(env.entry_state(1, 0)["qpos"], data.qpos)  # bit-for-bit physics
        assert not terminated and not bool(res.done.any())


def test_ant_vel_reward_matches_plain_gymnasium() -> None:
    env = AntVel()
    g = _gen(2)
    env.reset(torch.tensor([[2.0]]), 1, g)
    plain = _plain_copy("Ant-v5", env.entry_state(0, 0))
    data = plain.unwrapped.data
    for _ in range(8):
        a = torch.rand(1, 1, 8, generator=g) * 2 - 1
        res = env.step(a)
        act = a[0, 0].numpy().astype(np.float64)
        obs, _, terminated, _, info = plain.step(a[0, 0].numpy())
        contact = 0.5e-3 * float(np.square(np.clip(data.cfrc_ext, -1, 1)).sum())
        expected = -abs(info["x_velocity"] - 2.0) + 1.0 - 0.5e-2 * float(np.square(act).sum()) - contact + 0.05
        assert float(res.reward[0, 0]) == pytest.approx(expected, abs=1e-5)
        np.testing.assert_allclose(res.observation[0, 0].numpy(), obs, atol=1e-4)
        np.testing.assert_array_equal(env.entry_state(0, 0)["qvel"], data.qvel)
        assert bool(res.done[0, 0]) == bool(terminated)


def test_halfcheetah_dir_sign_flip() -> None:
    env = HalfCheetahDir()
    actions = torch.rand(6, 1, 1, 6, generator=_gen(3)) * 2 - 1
    rewards = {}
    for d in (1.0, -1.0):
        env.reset(torch.tensor([[d]]), 1, _gen(4))  # same generator -> same reset state
        rewards[d] = torch.stack([env.step(a).reward[0, 0] for a in actions])
    ctrl = 0.05 * actions.square().sum(dim=-1).flatten()
    torch.testing.assert_close(rewards[1.0] + rewards[-1.0], -2 * ctrl, atol=1e-5, rtol=0)
    assert float((rewards[1.0] - rewards[-1.0]).abs().max()) > 1e-3  # the velocity term flips sign


def test_out_of_box_actions_are_clipped() -> None:
    env = HalfCheetahVel()
    tasks = torch.tensor([[1.0]])
    results = []
    for scale in (1.0, 7.0):
        env.reset(tasks, 2, _gen(5))
        a = torch.tensor([1.0, -1.0, 1.0, -1.0, 0.5, -0.5]).expand(1, 2, 6)
        big = torch.where(a.abs() == 1.0, a * scale, a)
        results.append(env.step(big))
        np.testing.assert_array_equal(env.entry_state(0, 1)["ctrl"], a[0, 1].double().numpy())
    torch.testing.assert_close(results[0].reward, results[1].reward, atol=0, rtol=0)
    torch.testing.assert_close(results[0].observation, results[1].observation, atol=0, rtol=0)


def test_rand_params_scale_and_restore() -> None:
    env = HopperRandParams()
    base = env.base_params()
    assert env.task_dim == sum(v.size for v in base.values())
    g = _gen(6)
    random_task = env.sample_tasks(1, g)
    assert float(random_task.abs().max()) <= 3.0
    zero_task = torch.zeros(1, env.task_dim)
    env.reset(torch.cat([random_task, zero_task]), 1, g)
    model = env.entry_model(0, 0)
    e = random_task[0].double().numpy()
    sl = slice(0, base["body_mass"].size)
    np.testing.assert_array_equal(model.body_mass, base["body_mass"] * 1.5 ** e[sl])
    assert not np.array_equal(model.body_mass, base["body_mass"])
    off = base["body_mass"].size + base["body_inertia"].size
    dof = e[off : off + base["dof_damping"].size]
    np.testing.assert_array_equal(model.dof_damping, base["dof_damping"] * 1.3**dof)  # ProMP's 1.3
    for name, value in base.items():  # all-zero exponents = the base model
        np.testing.assert_array_equal(getattr(env.entry_model(1, 0), name), value)
    env.reset(torch.cat([zero_task, random_task]), 1, g)  # the same pooled env now gets zeros
    assert env.entry_model(0, 0) is model
    for name, value in base.items():
        np.testing.assert_array_equal(getattr(model, name), value)


@pytest.mark.parametrize("cls", [HopperRandParams, Walker2DRandParams], ids=lambda c: c.__name__)
def test_rand_params_episode_is_gymnasiums_own(cls) -> None:
    """Same parameters + gymnasium's reset(seed) -> the same episode, bit for bit."""
    env = cls()
    g = _gen(7)
    tasks = env.sample_tasks(1, g)
    twin = torch.Generator().set_state(g.get_state())
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=twin, dtype=torch.int64))
    env.reset(tasks, 1, g)
    plain = gym.make(cls.gym_id)
    for name, value in env.params_for(tasks[0]).items():  # set before reset, as _set_task does
        getattr(plain.unwrapped.model, name)[:] = value
    plain.reset(seed=seed)
    for _ in range(30):
        a = torch.rand(1, 1, env.action_dim, generator=g) * 2 - 1
        res = env.step(a)
        obs, reward, terminated, _, _ = plain.step(a[0, 0].numpy())
        np.testing.assert_array_equal(env.entry_state(0, 0)["qpos"], plain.unwrapped.data.qpos)
        assert float(res.reward[0, 0]) == pytest.approx(reward, abs=1e-5)
        np.testing.assert_allclose(res.observation[0, 0].numpy(), obs, atol=1e-5)
        assert bool(res.done[0, 0]) == bool(terminated)
        if terminated:
            break


@pytest.mark.parametrize("cls", [HalfCheetahVel, HopperRandParams], ids=lambda c: c.__name__)
def test_same_seed_same_episode_different_seed_differs(cls) -> None:
    env = cls()
    t1, o1, r1 = _rollout(env, seed=11)
    t2, o2, r2 = _rollout(env, seed=11)
    assert torch.equal(t1, t2) and torch.equal(o1, o2) and torch.equal(r1, r2)
    other = cls()  # a fresh pool must not matter either
    _, o3, r3 = _rollout(other, seed=11)
    assert torch.equal(o1, o3) and torch.equal(r1, r3)
    _, o4, r4 = _rollout(env, seed=12)
    assert not torch.equal(o1, o4) and not torch.equal(r1, r4)


def test_reset_seeds_come_from_the_generator() -> None:
    env = AntVel()
    g = _gen(13)
    twin = torch.Generator().set_state(g.get_state())  # documented: seeds are drawn first
    seeds = torch.randint(0, 2**31 - 1, (3,), generator=twin, dtype=torch.int64).tolist()
    obs = env.reset(torch.tensor([[1.0]]), 3, g)
    assert not torch.equal(obs[0, 0], obs[0, 1]) and not torch.equal(obs[0, 1], obs[0, 2])
    for r, seed in enumerate(seeds):  # each entry starts where gymnasium's reset(seed) puts it
        plain = gym.make("Ant-v5")
        first, _ = plain.reset(seed=seed)
        np.testing.assert_array_equal(env.entry_state(0, r)["qpos"], plain.unwrapped.data.qpos)
        np.testing.assert_allclose(obs[0, r].numpy(), first, atol=1e-6)


def test_done_entries_get_zero_reward_and_are_not_stepped() -> None:
    env = HopperRandParams(horizon=200)
    g = _gen(14)
    env.reset(env.sample_tasks(2, g), 2, g)
    frozen: dict[tuple[int, int], tuple[float, torch.Tensor]] = {}
    for _ in range(200):
        res = env.step(3 * torch.randn(2, 2, 3, generator=g))
        for (t, r), (sim_time, obs) in frozen.items():
            assert bool(res.done[t, r]) and float(res.reward[t, r]) == 0.0
            assert env.entry_state(t, r)["time"] == sim_time  # not stepped
            assert torch.equal(res.observation[t, r], obs)
        for t, r in res.done.nonzero().tolist():
            if (t, r) not in frozen:
                assert float(res.reward[t, r]) != 0.0  # the terminating step itself is rewarded
                frozen[(t, r)] = (env.entry_state(t, r)["time"], res.observation[t, r].clone())
        if len(frozen) == 4 and env.steps_taken > 5:
            break
    assert frozen, "no hopper fell within 200 steps of large random actions"


def test_model_pool_is_reused_and_grown() -> None:
    env = HopperRandParams(horizon=3)
    g = _gen(15)
    env.reset(env.sample_tasks(2, g), 1, g)
    first = env.entry_model(0, 0)
    env.reset(env.sample_tasks(3, g), 2, g)  # one model per task slot, shared by its rollouts
    assert env.entry_model(0, 0) is first and env.entry_model(2, 0) is env.entry_model(2, 1)
    assert len({id(env.entry_model(t, r)) for t in range(3) for r in range(2)}) == 3
    env.reset(env.sample_tasks(1, g), 1, g)
    assert env.entry_model(0, 0) is first
    for _ in range(3):
        env.step(torch.zeros(1, 1, 3))
    with pytest.raises(RuntimeError, match="horizon"):
        env.step(torch.zeros(1, 1, 3))
    cheetah = HalfCheetahVel()  # goal tasks leave the physics alone: one shared model
    cheetah.reset(cheetah.sample_tasks(2, g), 2, g)
    assert len({id(cheetah.entry_model(t, r)) for t in range(2) for r in range(2)}) == 1


def test_wrong_action_shape_raises() -> None:
    env = HalfCheetahVel()
    g = _gen(16)
    env.reset(env.sample_tasks(2, g), 3, g)
    with pytest.raises(ValueError, match="shape"):
        env.step(torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="shape"):
        env.step(torch.zeros(3, 2, 6))
    with pytest.raises(ValueError, match="NaN"):
        env.step(torch.full((2, 3, 6), float("nan")))


def test_registry_builds_the_families() -> None:
    from metabridge.rl.envs.registry import make_env

    env = make_env("halfcheetah-vel", velocity_range=(0.0, 3.0), horizon=50)
    assert isinstance(env, HalfCheetahVel) and env.velocity_range == (0.0, 3.0) and env.horizon == 50
    tasks = env.sample_tasks(200, _gen(17))
    assert float(tasks.min()) >= 0.0 and float(tasks.max()) <= 3.0 and float(tasks.max()) > 2.0


# ---------------------------------------------------------------- Meta-World


@pytest.fixture(scope="module")
def ml1_reach():
    """One ML1 reach-v3 family for the module (generating its 100 goals takes ~2 s)."""
    pytest.importorskip("metaworld")
    from metabridge.rl.envs.metaworld_ml import MetaWorldML1

    env = MetaWorldML1("reach-v3", horizon=150)
    yield env
    env.close()


def test_metaworld_ml1_reach_episode(ml1_reach) -> None:
    env = ml1_reach
    assert env.has_success and (env.obs_dim, env.action_dim, env.task_dim) == (39, 4, 1)
    g = _gen(18)
    train = env.sample_tasks(2, g, split="train")
    test = env.sample_tasks(2, g, split="test")
    n_train = env.num_tasks("train")
    assert bool((train < n_train).all()) and bool((test >= n_train).all())
    assert len(set(env.sample_tasks(50, g).flatten().tolist())) == 50  # without replacement
    goals = {}
    for split, tasks in (("train", train), ("test", test)):
        obs = env.reset(tasks, 1, g)
        assert obs.shape == (2, 1, 39) and bool((obs[..., -3:] == 0).all())  # goal hidden
        goals[split] = [tuple(np.round(env.raw_env(t, 0)._target_pos, 6)) for t in range(2)]
    assert not set(goals["train"]) & set(goals["test"])

    obs = env.reset(torch.cat([train[:1], test[:1]]), 2, g)
    for _ in range(150):
        res = env.step(torch.rand(2, 2, 4, generator=g) * 2 - 1)
        assert res.success is not None and res.success.dtype == torch.bool and res.success.shape == (2, 2)
        assert res.observation.shape == (2, 2, 39) and not bool(res.done.any())
    assert env.steps_taken == 150
    with pytest.raises(RuntimeError, match="horizon"):
        env.step(torch.zeros(2, 2, 4))
    with pytest.raises(ValueError, match="shape"):
        env.reset(train, 1, g)
        env.step(torch.zeros(2, 1, 3))
    assert "reach-v3" in env.describe_task(test[0]) and "test" in env.describe_task(test[0])


def test_metaworld_copied_model_env_matches_a_fresh_one(ml1_reach) -> None:
    from metabridge.rl.envs.metaworld_ml import _fast_class

    env = ml1_reach
    task = env.benchmark.train_tasks[7]
    cls = env.benchmark.train_classes["reach-v3"]
    fast = _fast_class(cls)
    envs = [cls(), fast(), fast()]  # the second fast one gets a copied model
    assert isinstance(envs[2], cls)
    obs = []
    for e in envs:
        e.set_task(task)
        obs.append([e.reset()[0]])
    rng = np.random.default_rng(0)
    for a in rng.uniform(-1, 1, (20, 4)):
        for e, o in zip(envs, obs):
            o.append(e.step(a)[0])
    np.testing.assert_array_equal(np.array(obs[0]), np.array(obs[2]))
    np.testing.assert_array_equal(np.array(obs[1]), np.array(obs[2]))


def test_metaworld_bad_name_lists_valid_ones() -> None:
    pytest.importorskip("metaworld")
    from metabridge.rl.envs.metaworld_ml import MetaWorldML1

    with pytest.raises(ValueError, match="reach-v3"):
        MetaWorldML1("reach-v9")
    assert MetaWorldML1("Reach-V3").env_name == "reach-v3"
