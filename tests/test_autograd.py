"""Autograd: tensor attributes, hooks, custom Functions, backward/grad, higher-order
gradients, graph shapes, grad modes, in-place ops and version counters, gradcheck.

PyTorch is the reference where a test compares numbers; those tests skip without it.
"""
import functools
import re
import sys
import threading

import numpy as np
import pytest

import pipeflow as pf
from pipeflow.autograd import Function

TORCH_REASON = "torch is the reference for this comparison"


@pytest.fixture(autouse=True)
def _restore_grad_mode():
    """A test that leaves grad mode off (a library bug) must not break the tests after it."""
    yield
    if not pf.is_grad_enabled():
        pf.set_grad_enabled(True)


def _torch():
    return pytest.importorskip("torch", reason=TORCH_REASON)


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def leaf(arr, dtype=pf.float64):
    return pf.tensor(np.array(arr), dtype=dtype, requires_grad=True)


def tleaf(torch, arr, dtype=None):
    return torch.tensor(np.array(arr), dtype=dtype or torch.float64, requires_grad=True)


def npy(t):
    """A pf or torch tensor (or None) as a NumPy array."""
    if t is None:
        return None
    if hasattr(t, "detach"):
        t = t.detach()
    return np.asarray(t.numpy() if hasattr(t, "numpy") else t)


def is_backward_of(node, op):
    """Built-in nodes are named like PyTorch's ('MulBackward0'); 'MulBackward' is fine too."""
    return re.fullmatch(op + r"Backward\d*", node.name()) is not None


def close(a, b, rtol=1e-6, atol=1e-8):
    np.testing.assert_allclose(npy(a), npy(b), rtol=rtol, atol=atol)


# --------------------------------------------------------------------------------------
# Tensor attributes
# --------------------------------------------------------------------------------------

def test_leaf_attributes():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    assert x.requires_grad and x.is_leaf
    assert x.grad is None and x.grad_fn is None
    c = pf.tensor([1.0, 2.0])
    assert not c.requires_grad and c.is_leaf and c.grad_fn is None


def test_grad_fn_names_and_propagation():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    c = pf.tensor([3.0, 4.0])
    assert is_backward_of((x * c).grad_fn, "Mul")
    assert is_backward_of((x + c).grad_fn, "Add")
    assert is_backward_of(x.exp().grad_fn, "Exp")
    assert not is_backward_of((x * c).grad_fn, "Add")
    y = x * c
    assert y.requires_grad and not y.is_leaf and y.grad is None
    z = c * c  # nothing requires grad: no graph
    assert not z.requires_grad and z.grad_fn is None and z.is_leaf
    # next_functions links to the leaf's accumulator
    nodes = [n for n, _ in y.grad_fn.next_functions if n is not None]
    assert [n.name() for n in nodes] == ["AccumulateGrad"]
    assert nodes[0].variable is x


def test_grad_has_shape_dtype_device_of_data():
    for dtype in (pf.float32, pf.float64):
        x = pf.tensor(rand(2, 3), dtype=dtype, requires_grad=True)
        (x * 2).sum().backward()
        assert isinstance(x.grad, pf.Tensor)
        assert x.grad.shape == x.shape and x.grad.dtype == x.dtype
        assert x.grad.device == x.device
        assert not x.grad.requires_grad and x.grad.grad_fn is None
        np.testing.assert_allclose(npy(x.grad), 2.0)


def test_data_is_detached_and_shares_storage():
    w = pf.tensor([1.0, 2.0, 3.0], requires_grad=True)
    d = w.data
    assert isinstance(d, pf.Tensor)
    assert not d.requires_grad and d.grad_fn is None
    d[0] = 10.0  # writes through to w
    assert w.tolist() == [10.0, 2.0, 3.0]
    assert w.requires_grad and w.is_leaf


def test_sgd_update_through_data_is_in_place():
    w = pf.tensor([1.0, -2.0, 3.0], requires_grad=True)
    for _ in range(2):
        w.grad = None
        loss = (w * w).sum()
        loss.backward()
        before = w.detach().numpy().copy()
        w.data -= 0.1 * w.grad.data
        np.testing.assert_allclose(npy(w), before * 0.8)
    assert w.is_leaf and w.requires_grad and w.grad_fn is None
    # still trainable after the updates
    w.grad = None
    (w * 3).sum().backward()
    np.testing.assert_allclose(npy(w.grad), 3.0)


def test_retain_grad_on_non_leaf():
    x = pf.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * 2
    z = x * 3
    y.retain_grad()
    assert y.retains_grad and not z.retains_grad
    (y * y + z).sum().backward()
    np.testing.assert_allclose(npy(y.grad), 2 * npy(y))
    assert z.grad is None  # not retained
    np.testing.assert_allclose(npy(x.grad), 8 * np.array([1.0, 2.0, 3.0]) + 3)


def test_retain_grad_on_leaf_is_noop_and_accumulates():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    x.retain_grad()  # a leaf keeps its grad anyway
    y = x * 2
    y.retain_grad()
    s = y.sum()
    s.backward(retain_graph=True)
    s.backward()
    np.testing.assert_allclose(npy(y.grad), [2.0, 2.0])
    np.testing.assert_allclose(npy(x.grad), [4.0, 4.0])


def test_retain_grad_sees_hook_modified_grad_like_torch():
    torch = _torch()
    x, tx = leaf([1.0, 2.0]), tleaf(torch, [1.0, 2.0])
    y, ty = x * 2, tx * 2
    y.retain_grad(), ty.retain_grad()
    y.register_hook(lambda g: g * 10)
    ty.register_hook(lambda g: g * 10)
    y.sum().backward()
    ty.sum().backward()
    close(x.grad, tx.grad)
    close(y.grad, ty.grad)  # torch runs the retain_grad hook last


# --------------------------------------------------------------------------------------
# Hooks
# --------------------------------------------------------------------------------------

def test_leaf_hook_sees_grad_and_replaces_it():
    torch = _torch()
    a = rand(3)
    seen, tseen = [], []

    def hook(store):
        def h(g):
            store.append(npy(g).copy())
            return g * 3
        return h

    x, tx = leaf(a), tleaf(torch, a)
    x.register_hook(hook(seen))
    tx.register_hook(hook(tseen))
    (x * x).sum().backward()
    (tx * tx).sum().backward()
    close(seen[0], tseen[0])
    close(x.grad, tx.grad)
    np.testing.assert_allclose(npy(x.grad), 6 * a)


def test_non_leaf_hook_replacement_flows_downstream():
    torch = _torch()
    a, b = rand(4, seed=1), rand(4, seed=2)
    results = []
    for lib, mk in ((pf, leaf), (torch, functools.partial(tleaf, torch))):
        x, w = mk(a), mk(b)
        y = x * x
        seen = []
        y.register_hook(lambda g, seen=seen: (seen.append(npy(g).copy()), g * 3 + 1)[1])
        (y * w).sum().backward()
        results.append((x.grad, w.grad, seen[0]))
    (gx, gw, s), (tgx, tgw, ts) = results
    close(s, ts)
    close(gx, tgx)
    close(gw, tgw)


def test_hook_returning_none_keeps_grad():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    y = x * 5
    calls = []
    y.register_hook(lambda g: calls.append(1))
    x.register_hook(lambda g: calls.append(2))
    y.sum().backward()
    assert calls == [1, 2]
    np.testing.assert_allclose(npy(x.grad), [5.0, 5.0])


def test_hooks_chain_in_registration_order():
    x = pf.tensor([1.0], requires_grad=True)
    y = x * 1
    y.register_hook(lambda g: g + 1)
    y.register_hook(lambda g: g * 10)
    y.sum().backward()
    np.testing.assert_allclose(npy(x.grad), [20.0])


def test_leaf_hook_runs_once_with_the_summed_grad():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    x.register_hook(lambda g: seen.append(npy(g).copy()))
    (x * 2 + x * 3 + x).sum().backward()
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], [6.0, 6.0])


def test_hook_handle_remove_leaf_and_non_leaf():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    hx = x.register_hook(lambda g: g * 100)
    hx.remove()
    y = x * 2
    hy = y.register_hook(lambda g: g * 100)
    hy.remove()
    y.sum().backward()
    np.testing.assert_allclose(npy(x.grad), [2.0, 2.0])
    hx.remove()  # removing twice is harmless


def test_hook_removed_between_backwards():
    x = pf.tensor([1.0], requires_grad=True)
    y = x * 2
    h = y.register_hook(lambda g: g * 10)
    y.backward(retain_graph=True)
    np.testing.assert_allclose(npy(x.grad), [20.0])
    h.remove()
    y.backward()
    np.testing.assert_allclose(npy(x.grad), [22.0])


def test_register_hook_requires_grad():
    t = pf.tensor([1.0, 2.0])
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        t.register_hook(lambda g: g)


# --------------------------------------------------------------------------------------
# Custom Functions
# --------------------------------------------------------------------------------------

class MyExp(Function):
    @staticmethod
    def forward(ctx, x):
        y = x.exp()
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        y, = ctx.saved_tensors
        return g * y


class MyReLU(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * (x > 0)


def test_custom_exp_matches_builtin():
    a = rand(3, 4)
    x1, x2 = leaf(a), leaf(a)
    y1, y2 = MyExp.apply(x1), x2.exp()
    assert y1.grad_fn.name() == "MyExpBackward"
    assert isinstance(y1.grad_fn, MyExp)
    close(y1, y2)
    w = rand(3, 4, seed=5)
    (y1 * pf.tensor(w)).sum().backward()
    (y2 * pf.tensor(w)).sum().backward()
    close(x1.grad, x2.grad)
    np.testing.assert_allclose(npy(x1.grad), w * np.exp(a))


def test_custom_relu_matches_builtin_and_torch():
    torch = _torch()
    a = rand(10, seed=3)
    x1, x2, tx = leaf(a), leaf(a), tleaf(torch, a)
    y1 = MyReLU.apply(x1)
    assert y1.grad_fn.name() == "MyReLUBackward" and y1.requires_grad
    (y1 * y1).sum().backward()
    (x2.relu() * x2.relu()).sum().backward()
    (tx.relu() * tx.relu()).sum().backward()
    close(x1.grad, x2.grad)
    close(x1.grad, tx.grad)


def test_needs_input_grad_in_backward():
    seen = []

    class Mul2(Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a * b

        @staticmethod
        def backward(ctx, g):
            seen.append(tuple(ctx.needs_input_grad))
            a, b = ctx.saved_tensors
            return (g * b if ctx.needs_input_grad[0] else None,
                    g * a if ctx.needs_input_grad[1] else None)

    x = pf.tensor([1.0, 2.0], requires_grad=True)
    c = pf.tensor([3.0, 4.0])
    Mul2.apply(x, c).sum().backward()
    assert seen == [(True, False)]
    np.testing.assert_allclose(npy(x.grad), [3.0, 4.0])
    Mul2.apply(c, x).sum().backward()
    assert seen[-1] == (False, True)
    np.testing.assert_allclose(npy(x.grad), [6.0, 8.0])


def test_needs_input_grad_available_in_forward():
    # PyTorch sets ctx.needs_input_grad before forward runs (forward may use it to decide
    # what to save)
    seen = []

    class F(Function):
        @staticmethod
        def forward(ctx, a, b, k):
            seen.append(tuple(ctx.needs_input_grad))
            return a * b * k

        @staticmethod
        def backward(ctx, g):
            return g, None, None

    x = pf.tensor([1.0], requires_grad=True)
    F.apply(x, pf.tensor([2.0]), 3)
    assert seen == [(True, False, False)]


def test_non_tensor_arguments():
    class Scale(Function):
        @staticmethod
        def forward(ctx, x, factor, name):
            assert name == "s"
            ctx.factor = factor
            return x * factor

        @staticmethod
        def backward(ctx, g):
            return g * ctx.factor, None, None

    x = pf.tensor([1.0, 2.0], requires_grad=True)
    y = Scale.apply(x, 2.5, "s")
    assert y.grad_fn.needs_input_grad == (True, False, False)
    y.sum().backward()
    np.testing.assert_allclose(npy(x.grad), [2.5, 2.5])


def test_mark_non_differentiable_index_output():
    class MaxWithIndex(Function):
        @staticmethod
        def forward(ctx, x):
            idx = x.argmax(0)
            val = x.amax(0)
            ctx.mark_non_differentiable(idx)
            ctx.save_for_backward(idx)
            ctx.shape = x.shape
            return val, idx

        @staticmethod
        def backward(ctx, g_val, g_idx):
            idx, = ctx.saved_tensors
            out = pf.zeros(*ctx.shape, dtype=g_val.dtype)
            out[idx] = g_val
            return out

    x = pf.tensor([1.0, 5.0, 2.0], requires_grad=True)
    val, idx = MaxWithIndex.apply(x)
    assert val.requires_grad and val.grad_fn is not None
    assert idx.grad_fn is None and not idx.requires_grad
    assert idx.item() == 1
    (val * 2).backward()
    np.testing.assert_allclose(npy(x.grad), [0.0, 2.0, 0.0])


def test_mark_non_differentiable_float_output():
    class TwoOut(Function):
        @staticmethod
        def forward(ctx, x):
            a, b = x * 2, x * 3
            ctx.mark_non_differentiable(b)
            return a, b

        @staticmethod
        def backward(ctx, ga, gb):
            return ga * 2

    x = pf.tensor([1.0, 2.0], requires_grad=True)
    a, b = TwoOut.apply(x)
    assert a.requires_grad and not b.requires_grad and b.grad_fn is None
    a.sum().backward()
    np.testing.assert_allclose(npy(x.grad), [2.0, 2.0])


def test_multiple_outputs_unused_gets_zero_grad():
    received = {}

    class SinCos(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.sin(), x.cos()

        @staticmethod
        def backward(ctx, gs, gc):
            received["gs"], received["gc"] = gs, gc
            x, = ctx.saved_tensors
            return gs * x.cos() - gc * x.sin()

    a = rand(2, 3)
    x = leaf(a)
    s, c = SinCos.apply(x)
    assert s.grad_fn is c.grad_fn
    assert s._output_nr == 0 and c._output_nr == 1
    s.sum().backward()  # the cos output is unused
    gc = received["gc"]
    assert isinstance(gc, pf.Tensor) and gc.shape == c.shape and gc.dtype == c.dtype
    np.testing.assert_array_equal(npy(gc), 0.0)
    np.testing.assert_allclose(npy(x.grad), np.cos(a))


def test_set_materialize_grads_false_passes_none():
    received = {}

    class Two(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.set_materialize_grads(False)
            return x * 1, x * 2

        @staticmethod
        def backward(ctx, g1, g2):
            received["g2"] = g2
            return g1 if g2 is None else g1 + 2 * g2

    x = pf.tensor([1.0], requires_grad=True)
    a, b = Two.apply(x)
    a.sum().backward()
    assert received["g2"] is None
    np.testing.assert_allclose(npy(x.grad), [1.0])


def test_function_returning_input_unchanged():
    torch = _torch()

    class Ident(Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            return g * 2

    class TIdent(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            return g * 2

    x, tx = leaf([1.0, 2.0]), tleaf(torch, [1.0, 2.0])
    y, ty = Ident.apply(x), TIdent.apply(tx)
    assert y is not x
    assert x.is_leaf and x.grad_fn is None
    assert y.grad_fn.name() == "IdentBackward" and not y.is_leaf
    close(y, x)
    (y * y).sum().backward()
    (ty * ty).sum().backward()
    close(x.grad, tx.grad)


def test_function_without_grad_inputs_records_nothing():
    x = pf.tensor([1.0, 2.0])
    y = MyExp.apply(x)
    assert y.grad_fn is None and not y.requires_grad
    with pf.no_grad():
        y = MyExp.apply(pf.tensor([1.0], requires_grad=True))
    assert y.grad_fn is None and not y.requires_grad


def test_function_wrong_number_of_grads_raises():
    class Bad(Function):
        @staticmethod
        def forward(ctx, a, b):
            return a * b

        @staticmethod
        def backward(ctx, g):
            return g  # one gradient for two inputs

    x = pf.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="incorrect number of gradients"):
        Bad.apply(x, x).sum().backward()


def test_custom_function_double_backward():
    a = rand(4, seed=7)
    x = leaf(a)
    (g,) = pf.autograd.grad(MyExp.apply(x).sum(), x, create_graph=True)
    assert g.requires_grad
    (gg,) = pf.autograd.grad(g.sum(), x)
    np.testing.assert_allclose(npy(gg), np.exp(a))
    assert pf.autograd.gradgradcheck(MyExp.apply, (leaf(a),))


def test_custom_saved_tensors_freed_after_backward():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    y = MyExp.apply(x)
    y.sum().backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.grad_fn.saved_tensors


def test_variable_returns_tensor_requiring_grad():
    v = pf.autograd.Variable(pf.tensor([1.0, 2.0]), requires_grad=True)
    assert isinstance(v, pf.Tensor)
    assert v.requires_grad and v.is_leaf
    (v * v).sum().backward()
    np.testing.assert_allclose(npy(v.grad), [2.0, 4.0])
    w = pf.autograd.Variable(pf.tensor([1.0]))
    assert isinstance(w, pf.Tensor) and not w.requires_grad


# --------------------------------------------------------------------------------------
# backward / grad
# --------------------------------------------------------------------------------------

def test_backward_scalar_implicit_gradient():
    x = pf.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x ** 2).sum().backward()
    np.testing.assert_allclose(npy(x.grad), [2.0, 4.0, 6.0])
    z = pf.tensor(2.0, requires_grad=True)
    (z * z).backward()
    assert z.grad.shape == () and z.grad.item() == 4.0


def test_backward_non_scalar_requires_gradient():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar outputs"):
        (x * 2).backward()


def test_backward_with_gradient_tensor_matches_torch():
    torch = _torch()
    a, g = rand(2, 3), rand(2, 3, seed=9)
    x, tx = leaf(a), tleaf(torch, a)
    (x.tanh() * x).backward(pf.tensor(g))
    (tx.tanh() * tx).backward(torch.tensor(g))
    close(x.grad, tx.grad)


def test_backward_gradient_shape_mismatch_raises():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError):
        (x * 2).backward(pf.ones(3, dtype=pf.float32))


def test_backward_on_tensor_not_requiring_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        pf.tensor([1.0, 2.0]).sum().backward()


def test_grads_accumulate_over_two_backwards():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    np.testing.assert_allclose(npy(x.grad), [2.0, 4.0])
    y.backward()
    np.testing.assert_allclose(npy(x.grad), [4.0, 8.0])
    # a fresh graph accumulates too
    (x * 3).sum().backward()
    np.testing.assert_allclose(npy(x.grad), [7.0, 11.0])


def test_grad_accumulates_in_place():
    # as in PyTorch, a later backward adds into the existing .grad tensor (not a new one)
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    (x * 2).sum().backward()
    g0 = x.grad
    (x * 2).sum().backward()
    assert x.grad is g0
    np.testing.assert_allclose(npy(g0), [4.0, 4.0])


def test_leaf_grads_do_not_alias_each_other_or_the_seed():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    w = pf.tensor([3.0, 4.0], requires_grad=True)
    seed = pf.tensor([1.0, 1.0])
    (x + w).backward(seed)  # add's backward hands the same gradient to both inputs
    x.grad.zero_()  # what an optimizer's zero_grad(set_to_none=False) does
    np.testing.assert_allclose(npy(w.grad), [1.0, 1.0])
    np.testing.assert_allclose(npy(seed), [1.0, 1.0])


def test_second_backward_through_freed_graph_raises():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


def test_backward_inputs_restricts_accumulation():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    w = pf.tensor([3.0, 4.0], requires_grad=True)
    (x * w).sum().backward(inputs=[x])
    np.testing.assert_allclose(npy(x.grad), [3.0, 4.0])
    assert w.grad is None


def test_autograd_grad_returns_without_touching_grad():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    w = pf.tensor([3.0, 4.0], requires_grad=True)
    gx, gw = pf.autograd.grad((x * w).sum(), [x, w])
    np.testing.assert_allclose(npy(gx), [3.0, 4.0])
    np.testing.assert_allclose(npy(gw), [1.0, 2.0])
    assert x.grad is None and w.grad is None
    assert not gx.requires_grad  # no create_graph
    (gx2,) = pf.autograd.grad((x * x).sum(), x)
    assert isinstance(gx2, pf.Tensor) and gx2.shape == x.shape


def test_autograd_grad_wrt_intermediate():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    out = (h * h).sum()
    (gh,) = pf.autograd.grad(out, h)
    np.testing.assert_allclose(npy(gh), [6.0, 12.0])
    assert x.grad is None


def test_autograd_grad_allow_unused():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    u = pf.tensor([5.0], requires_grad=True)
    y = (x * 2).sum()
    with pytest.raises(RuntimeError):
        pf.autograd.grad(y, [x, u], retain_graph=True)
    gx, gu = pf.autograd.grad(y, [x, u], retain_graph=True, allow_unused=True)
    np.testing.assert_allclose(npy(gx), [2.0, 2.0])
    assert gu is None
    gx, gu = pf.autograd.grad(y, [x, u], materialize_grads=True)
    np.testing.assert_array_equal(npy(gu), [0.0])


def test_autograd_grad_multiple_outputs_with_grad_outputs():
    torch = _torch()
    a = rand(3)
    x, tx = leaf(a), tleaf(torch, a)
    v1, v2 = rand(3, seed=1), rand(3, seed=2)
    (g,) = pf.autograd.grad([x.sin(), x * x], x, [pf.tensor(v1), pf.tensor(v2)])
    (tg,) = torch.autograd.grad([tx.sin(), tx * tx], tx, [torch.tensor(v1), torch.tensor(v2)])
    close(g, tg)


def test_autograd_backward_function_with_several_roots():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    pf.autograd.backward([(x * 2).sum(), (x * x).sum()])
    np.testing.assert_allclose(npy(x.grad), [4.0, 6.0])


def test_double_backward_of_cube():
    a = np.array([0.5, -1.0, 2.0])
    x = leaf(a)
    y = (x ** 3).sum()
    (g,) = pf.autograd.grad(y, x, create_graph=True)
    assert g.requires_grad and g.grad_fn is not None
    np.testing.assert_allclose(npy(g), 3 * a ** 2)
    (g2,) = pf.autograd.grad(g.sum(), x, create_graph=True)
    np.testing.assert_allclose(npy(g2), 6 * a)
    (g3,) = pf.autograd.grad(g2.sum(), x)
    np.testing.assert_allclose(npy(g3), [6.0, 6.0, 6.0])


def test_backward_create_graph_makes_grad_differentiable():
    a = np.array([1.0, 2.0])
    x = leaf(a)
    (x ** 3).sum().backward(create_graph=True)
    assert x.grad.requires_grad
    g = x.grad
    x.grad = None
    g.sum().backward()
    np.testing.assert_allclose(npy(x.grad), 6 * a)


def test_gradient_penalty_matches_torch():
    torch = _torch()
    xa, w1a, b1a, w2a = rand(5, 3, seed=1), rand(3, 4, seed=2), rand(4, seed=3), rand(4, 1, seed=4)

    def run(lib, mk):
        x, w1, b1, w2 = mk(xa), mk(w1a), mk(b1a), mk(w2a)
        f = ((x @ w1 + b1).tanh() @ w2).tanh().sum()
        (gx,) = lib.autograd.grad(f, x, create_graph=True)
        penalty = (gx * gx).sum()
        loss = f + 0.5 * penalty
        loss.backward()
        return penalty, [t.grad for t in (x, w1, b1, w2)]

    p, grads = run(pf, leaf)
    tp, tgrads = run(torch, functools.partial(tleaf, torch))
    close(p, tp)
    for g, tg in zip(grads, tgrads):
        close(g, tg, rtol=1e-5, atol=1e-10)


@pytest.mark.parametrize("name,fn,shapes", [
    ("tanh_mul", lambda x: x.tanh() * x, [(3,)]),
    ("exp_sum", lambda x: x.exp().sum(), [(2, 2)]),
    ("matmul", lambda a, b: (a @ b).sigmoid(), [(2, 3), (3, 2)]),
    ("div_pow", lambda a, b: a / (b * b + 1) + a ** 3, [(3,), (3,)]),
    ("broadcast", lambda a, b: (a * b).sin(), [(2, 1), (3,)]),
])
def test_gradgradcheck(name, fn, shapes):
    inputs = tuple(leaf(rand(*s, seed=i)) for i, s in enumerate(shapes))
    assert pf.autograd.gradgradcheck(fn, inputs)


# --------------------------------------------------------------------------------------
# Graph shapes
# --------------------------------------------------------------------------------------

def test_same_tensor_twice_in_one_op():
    x = pf.tensor([3.0], requires_grad=True)
    (x * x).backward()
    np.testing.assert_allclose(npy(x.grad), [6.0])


def test_diamond_graph_matches_torch():
    torch = _torch()
    a = rand(4)
    out = []
    for mk in (leaf, functools.partial(tleaf, torch)):
        x = mk(a)
        y = x * 2
        z = y * y + y.exp() - y.sin()  # y used three times
        z.sum().backward()
        out.append(x.grad)
    close(out[0], out[1])


def test_shared_subgraph_two_losses_matches_torch():
    torch = _torch()
    a, b = rand(3, 2), rand(2, 2, seed=1)
    out = []
    for lib, mk in ((pf, leaf), (torch, functools.partial(tleaf, torch))):
        x, w = mk(a), mk(b)
        h = (x @ w).tanh()
        l1, l2 = h.sum(), (h * h).mean()
        lib.autograd.backward([l1, l2])
        out.append((x.grad, w.grad))
    close(out[0][0], out[1][0])
    close(out[0][1], out[1][1])


def test_deep_chain_no_recursion_error():
    n = 5000
    x = pf.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(n):
        y = y * 1.0 + 0.0
    assert sys.getrecursionlimit() < 2 * n  # so a per-node recursion would be caught
    y.sum().backward()
    np.testing.assert_allclose(npy(x.grad), [1.0])
    del y  # freeing the deep graph must not overflow either


def test_deep_chain_autograd_grad_with_create_graph():
    x = pf.tensor([2.0], dtype=pf.float64, requires_grad=True)
    y = x
    for _ in range(2000):
        y = y + 0.001 * y * y / y.detach()  # dy'/dy = 1 + 0.002 * y / y.detach() = 1.002
    (g,) = pf.autograd.grad(y.sum(), x, create_graph=True)
    assert g.requires_grad
    np.testing.assert_allclose(npy(g), [1.002 ** 2000], rtol=1e-9)


def test_backward_into_part_of_graph():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    w = pf.tensor([3.0, 4.0], requires_grad=True)
    a = x * 2
    b = a * w
    a.sum().backward(retain_graph=True)  # b's branch is not part of this backward
    np.testing.assert_allclose(npy(x.grad), [2.0, 2.0])
    assert w.grad is None
    b.sum().backward()
    np.testing.assert_allclose(npy(w.grad), [2.0, 4.0])
    np.testing.assert_allclose(npy(x.grad), [2.0 + 6.0, 2.0 + 8.0])


def test_multi_output_op_partially_used():
    torch = _torch()
    a = rand(6, 2)
    out = []
    for mk in (leaf, functools.partial(tleaf, torch)):
        x = mk(a)
        parts = x.chunk(3, 0)
        (parts[1] * 2).sum().backward()
        out.append(x.grad)
    close(out[0], out[1])


# --------------------------------------------------------------------------------------
# Grad modes
# --------------------------------------------------------------------------------------

def test_no_grad_context():
    x = pf.tensor([1.0], requires_grad=True)
    assert pf.is_grad_enabled()
    with pf.no_grad():
        assert not pf.is_grad_enabled()
        y = x * 2
    assert pf.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None


def test_no_grad_decorators():
    @pf.no_grad()
    def f(t):
        """doc"""
        return t * 2, pf.is_grad_enabled()

    @pf.no_grad
    def g(t):
        return t * 2, pf.is_grad_enabled()

    x = pf.tensor([1.0], requires_grad=True)
    for fn in (f, g):
        y, enabled = fn(x)
        assert not enabled and not y.requires_grad
        assert pf.is_grad_enabled()
    assert f.__name__ == "f" and f.__doc__ == "doc" and g.__name__ == "g"


def test_enable_grad_inside_no_grad_and_as_decorator():
    x = pf.tensor([1.0], requires_grad=True)

    @pf.enable_grad()
    def f():
        return x * 2

    @pf.enable_grad
    def g():
        return x * 2

    with pf.no_grad():
        with pf.enable_grad():
            assert pf.is_grad_enabled()
            y = x * 2
        assert not pf.is_grad_enabled()
        assert f().requires_grad and g().requires_grad
        assert not pf.is_grad_enabled()
    assert y.requires_grad


def test_set_grad_enabled_as_call_context_and_decorator():
    x = pf.tensor([1.0], requires_grad=True)
    try:
        pf.set_grad_enabled(False)
        assert not pf.is_grad_enabled()
        assert not (x * 2).requires_grad
        pf.set_grad_enabled(True)
        assert pf.is_grad_enabled()
    finally:
        pf.set_grad_enabled(True)

    with pf.set_grad_enabled(False):
        assert not pf.is_grad_enabled()
        with pf.set_grad_enabled(True):
            assert (x * 2).requires_grad
        assert not pf.is_grad_enabled()
    assert pf.is_grad_enabled()

    @pf.set_grad_enabled(False)
    def f():
        return pf.is_grad_enabled()

    assert pf.is_grad_enabled()  # creating the decorator must not leave grad disabled
    assert f() is False
    assert pf.is_grad_enabled()


def test_inference_mode_context_and_decorator():
    x = pf.tensor([1.0], requires_grad=True)
    with pf.inference_mode():
        assert not pf.is_grad_enabled()
        assert not (x * 2).requires_grad
    assert pf.is_grad_enabled()
    with pf.inference_mode(False):
        assert pf.is_grad_enabled()

    @pf.inference_mode()
    def f():
        return (x * 2).requires_grad

    @pf.inference_mode
    def g():
        return (x * 2).requires_grad

    assert f() is False and g() is False
    assert pf.is_grad_enabled()


def test_grad_modes_accept_mode_keyword():
    with pf.set_grad_enabled(mode=False):
        assert not pf.is_grad_enabled()
    with pf.inference_mode(mode=False):
        assert pf.is_grad_enabled()
    with pf.inference_mode(mode=True):
        assert not pf.is_grad_enabled()
    assert pf.is_grad_enabled()


def test_grad_mode_restored_after_exception():
    with pytest.raises(ValueError):
        with pf.no_grad():
            raise ValueError

    @pf.no_grad()
    def boom():
        raise ValueError

    with pytest.raises(ValueError):
        boom()
    assert pf.is_grad_enabled()


def test_grad_mode_nesting():
    with pf.no_grad():
        with pf.no_grad():
            assert not pf.is_grad_enabled()
        assert not pf.is_grad_enabled()
        with pf.enable_grad():
            with pf.no_grad():
                assert not pf.is_grad_enabled()
            assert pf.is_grad_enabled()
        assert not pf.is_grad_enabled()
    assert pf.is_grad_enabled()


def test_autograd_namespace_exports_grad_modes():
    assert pf.autograd.no_grad is pf.no_grad
    assert pf.autograd.enable_grad is pf.enable_grad
    assert pf.autograd.set_grad_enabled is pf.set_grad_enabled
    assert pf.autograd.is_grad_enabled is pf.is_grad_enabled


def test_grad_mode_is_thread_local():
    x = pf.tensor([1.0], requires_grad=True)
    inside, outside = threading.Event(), threading.Event()
    result = {}

    def worker():
        with pf.no_grad():
            result["worker_enabled"] = pf.is_grad_enabled()
            inside.set()
            outside.wait(5)

    th = threading.Thread(target=worker)
    th.start()
    assert inside.wait(5)
    try:
        assert pf.is_grad_enabled()
        assert (x * 2).requires_grad
    finally:
        outside.set()
        th.join(5)
    assert result["worker_enabled"] is False

    # and a fresh thread starts with grad enabled even while this one has it off
    with pf.no_grad():
        seen = []
        t2 = threading.Thread(target=lambda: seen.append(pf.is_grad_enabled()))
        t2.start()
        t2.join(5)
    assert seen == [True]


# --------------------------------------------------------------------------------------
# In-place ops and version counters
# --------------------------------------------------------------------------------------

def _compare_inplace(torch, body, *arrays):
    """Run body(x...) -> scalar loss on pf and torch leaves; compare the leaves' grads."""
    px = [leaf(a) for a in arrays]
    tx = [tleaf(torch, a) for a in arrays]
    pl, tl = body(*px), body(*tx)
    pl.backward()
    tl.backward()
    close(pl, tl)
    for p, t in zip(px, tx):
        close(p.grad, t.grad)


def test_add_inplace_on_non_leaf_matches_torch():
    torch = _torch()

    def body(x, w):
        y = x * x
        y.add_(w, alpha=2)
        return (y * y).sum()

    _compare_inplace(torch, body, rand(3), rand(3, seed=1))


def test_mul_inplace_on_non_leaf_matches_torch():
    torch = _torch()

    def body(x, w):
        y = x.sin()
        y.mul_(w)
        y.mul_(3.0)
        return (y * x).sum()

    _compare_inplace(torch, body, rand(2, 3), rand(3, seed=1))


def test_iadd_on_non_leaf_matches_torch():
    torch = _torch()

    def body(x, w):
        y = x * 2
        y += w
        y *= w
        y -= x
        y /= 2.0
        return y.sum()

    _compare_inplace(torch, body, rand(4), rand(4, seed=1))


def test_setitem_on_non_leaf_matches_torch():
    torch = _torch()

    def body(x, v):
        y = x * 3
        y[0] = v
        y[1:, 1] = v[:2] * 2
        return (y * y).sum()

    _compare_inplace(torch, body, rand(3, 3), rand(3, seed=1))


def test_inplace_into_tensor_not_requiring_grad_matches_torch():
    torch = _torch()

    def body(w):
        lib = torch if isinstance(w, torch.Tensor) else pf
        buf = lib.zeros(3, dtype=lib.float64)
        buf.add_(w)
        buf.mul_(w)
        buf[1] = w[0] * 2
        assert buf.requires_grad and buf.grad_fn is not None
        return buf.sum()

    _compare_inplace(torch, body, rand(3))


def test_inplace_changes_grad_fn_and_keeps_identity():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    before = y.grad_fn
    out = y.add_(1)
    assert out is y
    assert y.grad_fn is not before and is_backward_of(y.grad_fn, "Add")
    assert not y.is_leaf


def test_inplace_on_leaf_requiring_grad_raises():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    msg = "a leaf Variable that requires grad is being used in an in-place operation"
    for op in (lambda: x.add_(1), lambda: x.mul_(2), lambda: x.zero_()):
        with pytest.raises(RuntimeError, match=msg):
            op()
    with pytest.raises(RuntimeError, match=msg):
        x += 1
    with pytest.raises(RuntimeError, match=msg):
        x[0] = 5.0
    assert x.tolist() == [1.0, 2.0] and x.is_leaf


def test_inplace_on_view_of_leaf_requiring_grad_raises():
    x = pf.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        x[0].add_(1)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        x.reshape(4).mul_(2)
    assert x.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_inplace_on_leaf_allowed_under_no_grad():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    v0 = x._version
    with pf.no_grad():
        x.mul_(2)
        x += 1
        x[0] = 0.0
    assert x.tolist() == [0.0, 5.0]
    assert x.is_leaf and x.requires_grad and x.grad_fn is None
    assert x._version == v0 + 3
    (x * x).sum().backward()
    np.testing.assert_allclose(npy(x.grad), [0.0, 10.0])


def test_modified_saved_output_raises():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp()  # exp saves its output
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_modified_saved_input_raises():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    b = pf.tensor([3.0, 4.0], requires_grad=True)
    a = x * 1
    z = a * b  # mul saves a
    a.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.sum().backward()


def test_modified_saved_tensor_through_detach_raises():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    y = x.sigmoid()  # saves its output
    y.detach().mul_(2)  # shares storage and version counter
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_inplace_on_input_of_add_is_fine():
    # add needs none of its inputs' values for backward, so PyTorch allows this
    torch = _torch()

    def body(x, w):
        a = x * 1
        z = a + w
        a.mul_(5)
        return (z * 2).sum() + a.sum()

    _compare_inplace(torch, body, rand(3), rand(3, seed=1))


def test_inplace_on_view_updates_base_gradient():
    # PyTorch rebases the base's history when a view of it is modified in place
    torch = _torch()

    def body(x):
        y = x * 1
        row = y[0]
        row.mul_(10)
        return (y * y).sum()

    _compare_inplace(torch, body, rand(2, 3))


def test_version_counter_bumps():
    t = pf.zeros(3)
    assert t._version == 0
    t.add_(1)
    assert t._version == 1
    t.mul_(2)
    t += 1
    assert t._version == 3
    t[0] = 5.0
    assert t._version == 4
    t.zero_()
    t.fill_(2.0)
    t.copy_(pf.ones(3))
    assert t._version == 7
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1
    y.add_(1)
    y[1] = 0.0
    assert y._version == 2
    assert x._version == 0


def test_views_and_detach_share_version_counter():
    t = pf.zeros(2, 3)
    v = t[0]
    r = t.reshape(6)
    d = t.detach()
    v.add_(1)
    assert t._version == 1 and r._version == 1 and d._version == 1
    d.mul_(2)
    assert t._version == 2 and v._version == 2
    assert t.tolist() == [[2.0, 2.0, 2.0], [0.0, 0.0, 0.0]]


def test_saved_tensor_modified_through_reshape_view_raises():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    c = pf.tensor([1.0, 2.0])
    z = x * c  # mul saves c for x's gradient
    c.reshape(1, 2).mul_(10)  # a view of c: c's version must move on
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.sum().backward()


# --------------------------------------------------------------------------------------
# gradcheck
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn,shapes", [
    (lambda x: x.exp() * x.sin(), [(3,)]),
    (lambda a, b: a @ b, [(2, 3), (3, 2)]),
    (lambda a, b: (a / b).tanh(), [(2, 2), (2, 2)]),
    (lambda x: x.sum(1).sqrt(), [(2, 3)]),
    (lambda x: MyExp.apply(x), [(4,)]),
])
def test_gradcheck_passes(fn, shapes):
    inputs = tuple(pf.tensor(np.abs(rand(*s, seed=i)) + 0.5, dtype=pf.float64,
                             requires_grad=True) for i, s in enumerate(shapes))
    assert pf.autograd.gradcheck(fn, inputs)


def test_gradcheck_with_non_grad_input():
    x = leaf(rand(3))
    c = pf.tensor(rand(3, seed=1))
    assert pf.autograd.gradcheck(lambda a, b: a * b + b, (x, c))


class WrongExp(MyExp):
    @staticmethod
    def backward(ctx, g):
        y, = ctx.saved_tensors
        return g * y * 1.1  # wrong


def test_gradcheck_detects_wrong_backward():
    x = leaf(rand(3))
    with pytest.raises(RuntimeError):
        pf.autograd.gradcheck(WrongExp.apply, (x,))
    assert pf.autograd.gradcheck(WrongExp.apply, (x,), raise_exception=False) is False
    # the check does not disturb the input
    np.testing.assert_array_equal(npy(x), rand(3))


def test_gradgradcheck_detects_non_differentiable_backward():
    class NonDiffBackward(Function):  # backward uses raw arrays: its result has no graph
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return g * pf.tensor(2 * x.detach().numpy())

    x = leaf(rand(3))
    assert pf.autograd.gradcheck(NonDiffBackward.apply, (x,))
    assert pf.autograd.gradgradcheck(NonDiffBackward.apply, (x,), raise_exception=False) is False


# --------------------------------------------------------------------------------------
# Gradient dtype and shape
# --------------------------------------------------------------------------------------

def test_grad_dtype_follows_leaf_under_promotion():
    x32 = pf.tensor([1.0, 2.0], dtype=pf.float32, requires_grad=True)
    c64 = pf.tensor([3.0, 4.0], dtype=pf.float64)
    y = x32 * c64
    assert y.dtype == pf.float64
    (y * y).sum().backward()
    assert x32.grad.dtype == pf.float32
    np.testing.assert_allclose(npy(x32.grad), [18.0, 64.0])

    w64 = pf.tensor([1.0, 2.0], dtype=pf.float64, requires_grad=True)
    (w64 + x32.detach()).sum().backward()
    assert w64.grad.dtype == pf.float64


def test_grad_dtype_through_cast():
    x = pf.tensor([1.0, 2.0], dtype=pf.float32, requires_grad=True)
    (x.double() * 2).sum().backward()
    assert x.grad.dtype == pf.float32
    np.testing.assert_allclose(npy(x.grad), [2.0, 2.0])


def test_broadcast_grads_sum_to_leaf_shape_matches_torch():
    torch = _torch()
    shapes = [(3, 1), (1, 4), (4,), ()]
    arrays = [rand(*s, seed=i) if s else np.array(0.7) for i, s in enumerate(shapes)]
    out = []
    for mk in (leaf, functools.partial(tleaf, torch)):
        ts = [mk(a) for a in arrays]
        a, b, c, d = ts
        ((a + b) * c - d * a).tanh().sum().backward()
        out.append([t.grad for t in ts])
    for g, tg, s in zip(out[0], out[1], shapes):
        assert tuple(g.shape) == s
        close(g, tg)


def test_broadcast_with_leading_dims():
    x = pf.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x * pf.ones(2, 5, 3)).sum().backward()
    assert x.grad.shape == (3,)
    np.testing.assert_allclose(npy(x.grad), [10.0, 10.0, 10.0])


# --------------------------------------------------------------------------------------
# requires_grad rules, detach
# --------------------------------------------------------------------------------------

def test_requires_grad_on_integer_tensor_raises():
    i = pf.tensor([1, 2, 3])
    with pytest.raises(RuntimeError, match="floating point"):
        i.requires_grad = True
    with pytest.raises(RuntimeError):
        i.requires_grad_()
    with pytest.raises(RuntimeError):
        pf.tensor([1, 2], requires_grad=True)
    with pytest.raises(RuntimeError):
        pf.zeros(2, dtype=pf.int64, requires_grad=True)
    i.requires_grad = False  # turning it off is fine
    x = pf.tensor([1.0, 3.0, 2.0], requires_grad=True)
    assert not x.argmax().requires_grad
    assert not (x > 1).requires_grad


def test_requires_grad_on_non_leaf_raises():
    x = pf.tensor([1.0], requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad = False
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad_(False)
    assert y.requires_grad


def test_requires_grad_setter_on_leaf():
    x = pf.tensor([1.0, 2.0])
    assert x.requires_grad_() is x and x.requires_grad
    x.requires_grad = False
    assert not x.requires_grad
    x.requires_grad = True
    (x * 2).sum().backward()
    np.testing.assert_allclose(npy(x.grad), [2.0, 2.0])


def test_detach_semantics():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    d = y.detach()
    assert not d.requires_grad and d.grad_fn is None and d.is_leaf
    d[0] = 100.0  # shares storage
    assert y.tolist()[0] == 100.0
    z = (d * x).sum()  # no gradient flows through d
    z.backward()
    np.testing.assert_allclose(npy(x.grad), [100.0, 4.0])


def test_detach_in_place():
    x = pf.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    out = y.detach_()
    assert out is y
    assert not y.requires_grad and y.grad_fn is None and y.is_leaf
    assert not (y * 3).requires_grad
    y.requires_grad_()  # now a leaf: may require grad again
    (y * 3).sum().backward()
    np.testing.assert_allclose(npy(y.grad), [3.0, 3.0])
    assert x.grad is None
