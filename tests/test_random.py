"""Random streams: the global one behind pf.manual_seed, local pf.Generator streams,
their states, and the random factories / in-place fills that draw from them."""
import numpy as np
import pytest

import pipeflow as pf

DRAWS = {
    "rand": lambda g=None: pf.rand(4, 3, generator=g),
    "randn": lambda g=None: pf.randn(4, 3, generator=g),
    "randint": lambda g=None: pf.randint(0, 1000, (12,), generator=g),
    "randperm": lambda g=None: pf.randperm(50, generator=g),
}


@pytest.fixture(autouse=True)
def _restore_global_stream():
    """Leave the global stream as each test found it."""
    state = pf.get_rng_state()
    yield
    pf.set_rng_state(state)


@pytest.mark.parametrize("name", list(DRAWS))
def test_manual_seed_reproducible(name):
    draw = DRAWS[name]
    pf.manual_seed(1234)
    a = draw()
    b = draw()
    pf.manual_seed(1234)
    a2 = draw()
    b2 = draw()
    assert a.tolist() == a2.tolist() and b.tolist() == b2.tolist()
    assert a.tolist() != b.tolist()  # the stream moves on between draws


@pytest.mark.parametrize("name", list(DRAWS))
def test_different_seeds_differ(name):
    draw = DRAWS[name]
    pf.manual_seed(1)
    a = draw()
    pf.manual_seed(2)
    b = draw()
    assert a.tolist() != b.tolist()


def test_manual_seed_returns_generator_and_sets_initial_seed():
    g = pf.manual_seed(77)
    assert isinstance(g, pf.Generator)
    assert pf.initial_seed() == 77


def test_like_factories_follow_the_seed():
    x = pf.zeros(3, 2)
    pf.manual_seed(5)
    a, b = pf.rand_like(x), pf.randn_like(x)
    pf.manual_seed(5)
    assert pf.rand_like(x).tolist() == a.tolist()
    assert pf.randn_like(x).tolist() == b.tolist()


@pytest.mark.parametrize("name", list(DRAWS))
def test_generator_is_reproducible(name):
    draw = DRAWS[name]
    g1 = pf.Generator().manual_seed(99)
    g2 = pf.Generator().manual_seed(99)
    assert draw(g1).tolist() == draw(g2).tolist()
    assert draw(g1).tolist() == draw(g2).tolist()
    g3 = pf.Generator().manual_seed(100)
    assert draw(pf.Generator().manual_seed(99)).tolist() != draw(g3).tolist()


@pytest.mark.parametrize("name", list(DRAWS))
def test_generator_independent_of_global_stream(name):
    draw = DRAWS[name]
    g = pf.Generator().manual_seed(3)
    first, second = draw(g), draw(g)

    g = pf.Generator().manual_seed(3)
    pf.manual_seed(0)
    first2 = draw(g)
    pf.rand(100)          # drawing from the global stream in between...
    pf.randn(7)
    pf.randperm(10)
    second2 = draw(g)     # ... does not move the generator's stream
    assert first.tolist() == first2.tolist()
    assert second.tolist() == second2.tolist()


def test_global_stream_independent_of_generator():
    pf.manual_seed(11)
    a, b = pf.randn(5), pf.randn(5)
    pf.manual_seed(11)
    a2 = pf.randn(5)
    pf.randn(1000, generator=pf.Generator().manual_seed(11))
    b2 = pf.randn(5)
    assert a.tolist() == a2.tolist() and b.tolist() == b2.tolist()


def test_generator_manual_seed_returns_self_and_initial_seed():
    g = pf.Generator()
    assert g.manual_seed(42) is g
    assert g.initial_seed() == 42
    assert g.device == "cpu"
    s = g.seed()
    assert isinstance(s, int) and g.initial_seed() == s


def test_generator_state_roundtrip():
    g = pf.Generator().manual_seed(8)
    pf.rand(3, generator=g)
    state = g.get_state()
    a = pf.randn(6, generator=g)
    b = pf.randint(0, 100, (6,), generator=g)
    g.set_state(state)
    assert pf.randn(6, generator=g).tolist() == a.tolist()
    assert pf.randint(0, 100, (6,), generator=g).tolist() == b.tolist()


def test_state_moves_to_another_generator():
    g = pf.Generator().manual_seed(21)
    pf.rand(4, generator=g)
    h = pf.Generator().manual_seed(0)
    h.set_state(g.get_state())
    assert pf.rand(5, generator=h).tolist() == pf.rand(5, generator=g).tolist()


def test_global_state_roundtrip():
    pf.manual_seed(0)
    pf.rand(2)
    state = pf.get_rng_state()
    a = pf.rand(4)
    p = pf.randperm(9)
    pf.set_rng_state(state)
    assert pf.rand(4).tolist() == a.tolist()
    assert pf.randperm(9).tolist() == p.tolist()


def test_uniform_inplace_with_generator():
    t = pf.empty(2000)
    alias = t.detach()
    out = t.uniform_(2.0, 3.0, generator=pf.Generator().manual_seed(4))
    assert out is t and t.dtype == pf.float32
    values = t.numpy()
    assert values.min() >= 2.0 and values.max() < 3.0
    assert abs(values.mean() - 2.5) < 0.05
    assert alias.tolist() == t.tolist()
    again = pf.empty(2000).uniform_(2.0, 3.0, generator=pf.Generator().manual_seed(4))
    assert again.tolist() == t.tolist()


def test_normal_inplace_with_generator():
    t = pf.zeros(20000, dtype=pf.float64)
    out = t.normal_(5.0, 0.5, generator=pf.Generator().manual_seed(6))
    assert out is t and t.dtype == pf.float64
    values = t.numpy()
    assert abs(values.mean() - 5.0) < 0.03
    assert abs(values.std() - 0.5) < 0.03
    again = pf.zeros(20000, dtype=pf.float64).normal_(5.0, 0.5,
                                                      generator=pf.Generator().manual_seed(6))
    assert again.tolist() == t.tolist()


def test_inplace_fills_follow_global_seed():
    pf.manual_seed(9)
    a = pf.empty(5).uniform_()
    b = pf.empty(5).normal_()
    pf.manual_seed(9)
    assert pf.empty(5).uniform_().tolist() == a.tolist()
    assert pf.empty(5).normal_().tolist() == b.tolist()
    assert 0.0 <= min(a.tolist()) and max(a.tolist()) < 1.0


def test_randn_moments():
    pf.manual_seed(0)
    x = pf.randn(100_000).numpy().astype(np.float64)
    assert abs(x.mean()) < 0.02
    assert abs(x.std() - 1.0) < 0.02


def test_rand_range_and_moments():
    pf.manual_seed(0)
    x = pf.rand(100_000).numpy().astype(np.float64)
    assert x.min() >= 0.0 and x.max() < 1.0
    assert abs(x.mean() - 0.5) < 0.01
    assert abs(x.var() - 1 / 12) < 0.01


def test_randint_bounds():
    pf.manual_seed(0)
    x = pf.randint(3, 7, (5000,))
    values = x.numpy()
    assert values.min() >= 3 and values.max() <= 6
    assert set(values.tolist()) == {3, 4, 5, 6}
    y = pf.randint(5, (2000,)).numpy()  # randint(high, size)
    assert y.min() >= 0 and y.max() <= 4 and set(y.tolist()) == set(range(5))
    z = pf.randint(-2, 2, size=(2, 50), dtype=pf.int32)
    assert z.shape == (2, 50) and z.dtype == pf.int32
    assert z.numpy().min() >= -2 and z.numpy().max() <= 1


def test_randperm_is_a_permutation():
    pf.manual_seed(0)
    p = pf.randperm(100)
    assert sorted(p.tolist()) == list(range(100))
    assert p.tolist() != list(range(100))
    assert pf.randperm(0).tolist() == []


def test_default_dtypes():
    assert pf.rand(3).dtype == pf.float32
    assert pf.randn(3).dtype == pf.float32
    assert pf.randint(0, 5, (3,)).dtype == pf.int64
    assert pf.randperm(3).dtype == pf.int64
    assert pf.rand(3, dtype=pf.float64).dtype == pf.float64
    assert pf.randn(3, dtype=pf.float16).dtype == pf.float16


def test_dtype_does_not_change_reproducibility():
    pf.manual_seed(2)
    a = pf.rand(5, dtype=pf.float64)
    pf.manual_seed(2)
    b = pf.rand(5, dtype=pf.float64)
    assert a.tolist() == b.tolist()


def test_random_factories_shapes():
    assert pf.rand(2, 3).shape == (2, 3)
    assert pf.rand((2, 3)).shape == (2, 3)
    assert pf.randn([4]).shape == (4,)
    assert pf.randn(()).shape == ()
    assert pf.randint(0, 2, (3, 1)).shape == (3, 1)
