"""Edge cases where a PyTorch user's code must give PyTorch's values, dtypes and gradients:
views written in place, operands that need promotion, empty and 0-d reductions, and
operators with Python numbers on either side. Each test runs the same code on both."""
import numpy as np
import pytest

import pipeflow as pf

torch = pytest.importorskip("torch", reason="torch (the ref extra) is the reference")


def both(fn, *arrays, grad=True):
    """Run fn(lib, *leaves) in pipeflow and torch; return (ours, theirs) outputs and the
    gradients of sum(output) with respect to every float leaf."""
    results = []
    for lib in (pf, torch):
        leaves = [lib.tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in arrays]
        out = fn(lib, *leaves)
        grads = []
        if grad and out.requires_grad:
            out.sum().backward()
            grads = [leaf.grad for leaf in leaves if leaf.requires_grad]
        results.append((out, grads))
    return results


def assert_same(ours, theirs):
    (o, og), (t, tg) = ours, theirs
    assert tuple(o.shape) == tuple(t.shape)
    assert o.dtype.name == str(t.dtype).split(".")[-1]
    np.testing.assert_allclose(np.asarray(o.detach().tolist(), dtype=float),
                               np.asarray(t.detach().tolist(), dtype=float), rtol=1e-6, atol=1e-6)
    assert len(og) == len(tg)
    for a, b in zip(og, tg):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)


X = np.arange(1.0, 7.0).reshape(2, 3)


def check(fn, *arrays, grad=True):
    assert_same(*both(fn, *(arrays or (X,)), grad=grad))


def test_in_place_on_base_reaches_views_taken_before():
    def fn(L, x):
        y = x * 1
        v = y[0]
        y.mul_(3)
        return v * v
    check(fn)


def test_in_place_on_one_view_reaches_a_sibling_view():
    def fn(L, x):
        y = x * 1
        v1 = y[0]
        y[:, 0].mul_(3)
        return v1 * v1
    check(fn)


def test_in_place_on_a_product_input_needed_only_by_the_other_side():
    def fn(L, x):
        y = x * 2
        w = y * 3
        y.add_(1)
        return w
    check(fn)


def test_where_with_two_python_numbers():
    check(lambda L, x: L.where(x > 2, 1.0, 0.0) + x)
    check(lambda L, x: L.where(x > 2, 1.0, x))


def test_float_ops_on_integer_tensors_give_float32():
    ints = np.arange(1, 7).reshape(2, 3)
    for fn in (lambda L, t: t.sqrt(), lambda L, t: t.exp(), lambda L, t: t.sigmoid(),
               lambda L, t: t.tanh(), lambda L, t: t.logsumexp(1),
               lambda L, t: t.clamp(min=1.5), lambda L, t: L.cat([t, t.float()])):
        check(fn, ints, grad=False)


def test_reductions_over_no_dims_and_0d_tensors():
    check(lambda L, x: x.sum(dim=()))
    scalar = np.array(3.0)
    for fn in (lambda L, t: t.sum(0), lambda L, t: t.mean(-1), lambda L, t: t.logsumexp(0),
               lambda L, t: t.amax(0)):
        check(fn, scalar)


def test_gather_with_an_index_smaller_than_the_input():
    index = np.array([[0]])
    check(lambda L, x: x.gather(1, L.tensor(index)))


def test_remainder_keeps_autograd_and_floor_divide_matches():
    check(lambda L, x: x % 2.5)
    # torch has no derivative for floor_divide, nor for remainder with respect to the divisor
    check(lambda L, x: 7.0 // x + x // 2 + 7.0 % x, grad=False)


def test_std_of_a_constant_has_zero_gradient():
    check(lambda L, x: x.std(), np.ones(4))


def test_float16_norm_does_not_overflow():
    ours = pf.tensor([300.0, 400.0], dtype=pf.float16).norm()
    assert ours.item() == 500.0


def test_pow_gradient_with_respect_to_exponent_at_base_zero():
    check(lambda L, x: L.pow(L.zeros(3, dtype=x.dtype), x), np.array([0.0, 1.0, 2.0]))
    check(lambda L, x: x ** x, np.array([0.0, 1.0, 2.0]))


def test_integers_select_before_advanced_indices():
    cube = np.arange(24.0).reshape(2, 3, 4)
    check(lambda L, x: x[0, :, L.tensor([1, 2])], cube)
    check(lambda L, x: x[L.tensor([1, 0]), :, 2], cube)
    check(lambda L, x: x[..., 1, L.tensor([[0], [3]])], cube)

    def put(L, x):
        y = x * 1
        y[1, :, L.tensor([0, 3])] = L.tensor([[-1.0], [-2.0], [-3.0]], dtype=x.dtype)
        return y
    check(put, cube)


def test_empty_index_list_and_empty_softmax():
    check(lambda L, x: x[[]], grad=False)
    check(lambda L, x: x[:0].softmax(-1), grad=False)


def test_in_place_power():
    for lib in (pf, torch):
        t = lib.tensor([2.0, 3.0])
        alias = t
        t **= 2
        assert alias is t and t.tolist() == [4.0, 9.0]


def test_integer_scalars_out_of_range_wrap_around():
    for lib in (pf, torch):
        assert (lib.tensor([200], dtype=lib.uint8) + 1000).tolist() == [176]


def test_size_slices_and_sums_stay_sizes():
    shape = pf.ones(2, 3, 4).shape
    assert isinstance(shape[1:], pf.Size) and shape[1:] == (3, 4)
    assert isinstance(shape + (5,), pf.Size) and shape + (5,) == (2, 3, 4, 5)
