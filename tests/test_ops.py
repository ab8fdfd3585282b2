"""Every differentiable op through the harness (tests/op_harness.py): gradcheck in
float64, then forward and backward against torch in every float dtype, contiguous and
not, on the CPU and (when present) on CUDA."""
import numpy as np

from op_harness import Case, standard_tests, torch

positive = staticmethod(lambda x: np.abs(x) + 0.5)
away_from_zero = staticmethod(lambda x: x + np.sign(x) * 0.3)  # kinks at 0 stay clear
LOW = ("float64", "float32")  # ops whose half-precision rounding torch does differently

# Shapes exercising broadcasting, size-1 and size-0 dims for binary elementwise ops.
BINARY = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 3), (4, 1)), ((1,), (3, 2)),
          ((0, 3), (3,)), ((), (2, 3))]
UNARY = [((3, 4),), ((2, 3, 2),), ((0, 2),), ((),), ((5,),)]
idx = np.array  # fixed (non-differentiable) inputs

CASES = [
    Case("add", lambda L, a, b: a + b, BINARY),
    Case("add_scalar", lambda L, a: 2.5 + a, UNARY),
    Case("sub", lambda L, a, b: a - b, BINARY),
    Case("rsub_scalar", lambda L, a: 1.0 - a, UNARY),
    Case("mul", lambda L, a, b: a * b, BINARY),
    Case("div", lambda L, a, b: a / b, BINARY, domain=away_from_zero),
    Case("rdiv_scalar", lambda L, a: 2.0 / a, UNARY, domain=away_from_zero),
    Case("neg", lambda L, a: -a, UNARY),
    Case("abs", lambda L, a: a.abs(), UNARY, domain=away_from_zero),
    Case("exp", lambda L, a: a.exp(), UNARY),
    Case("log", lambda L, a: a.log(), UNARY, domain=positive),
    Case("log1p", lambda L, a: a.log1p(), UNARY, domain=positive),
    Case("sqrt", lambda L, a: a.sqrt(), UNARY, domain=positive),
    Case("rsqrt", lambda L, a: a.rsqrt(), UNARY, domain=positive),
    Case("pow_scalar", lambda L, a: a ** 3, UNARY),
    Case("pow_fractional", lambda L, a: a ** 1.5, UNARY, domain=positive),
    Case("pow_tensor", lambda L, a, b: a ** b, BINARY[:4], domain=positive),
    Case("rpow", lambda L, a: 2.0 ** a, UNARY),
    Case("sin", lambda L, a: a.sin(), UNARY),
    Case("cos", lambda L, a: a.cos(), UNARY),
    Case("tanh", lambda L, a: a.tanh(), UNARY),
    Case("sigmoid", lambda L, a: a.sigmoid(), UNARY),
    Case("relu", lambda L, a: a.relu(), UNARY, domain=away_from_zero),
    Case("leaky_relu", lambda L, a: L.nn.functional.leaky_relu(a, 0.2) if L is torch
         else a.leaky_relu(0.2), UNARY, domain=away_from_zero),
    Case("gelu", lambda L, a: L.nn.functional.gelu(a) if L is torch else a.gelu(), UNARY),
    Case("gelu_tanh", lambda L, a: L.nn.functional.gelu(a, approximate="tanh") if L is torch
         else a.gelu(approximate="tanh"), UNARY),
    Case("softplus", lambda L, a: L.nn.functional.softplus(a * 8, beta=2, threshold=5)
         if L is torch else (a * 8).softplus(beta=2, threshold=5), UNARY,
         domain=away_from_zero),
    Case("clamp", lambda L, a: a.clamp(-0.5, 0.7), UNARY, domain=away_from_zero),
    Case("clamp_min", lambda L, a: a.clamp(min=0.1), UNARY, domain=away_from_zero),
    Case("maximum", lambda L, a, b: L.maximum(a, b), BINARY),
    Case("minimum", lambda L, a, b: L.minimum(a, b), BINARY),
    Case("where", lambda L, a, b, c: L.where(c, a, b),
         [((3, 4), (3, 4), idx([[True, False, True, False]] * 3)), ((2, 3), (3,), idx([True]))]),
    Case("softmax", lambda L, a: a.softmax(-1), UNARY[:2] + [((0, 3),)]),
    Case("softmax_dim0", lambda L, a: a.softmax(0), UNARY[:2]),
    Case("log_softmax", lambda L, a: a.log_softmax(1), UNARY[:2]),
    # reductions
    Case("sum", lambda L, a: a.sum(), UNARY),
    Case("sum_dim", lambda L, a: a.sum(1), [((3, 4),), ((2, 3, 2),), ((0, 2),)]),
    Case("sum_dims_keepdim", lambda L, a: a.sum((0, 2), keepdim=True), [((2, 3, 2),)]),
    Case("mean", lambda L, a: a.mean(), UNARY[:2] + [((5,),)]),
    Case("mean_dim", lambda L, a: a.mean(-1, keepdim=True), UNARY[:2]),
    Case("var", lambda L, a: a.var(), UNARY[:2], rtol_scale=10),
    Case("var_dim_biased", lambda L, a: a.var(1, unbiased=False), UNARY[:2], rtol_scale=10),
    Case("std", lambda L, a: a.std(0), UNARY[:2], rtol_scale=10),
    Case("max_all", lambda L, a: a.max(), UNARY[:2] + [((5,),)]),
    Case("max_dim", lambda L, a: tuple(a.max(1)), UNARY[:2]),
    Case("min_dim_keepdim", lambda L, a: tuple(a.min(0, keepdim=True)), UNARY[:2]),
    Case("amax", lambda L, a: a.amax((0, 1)), UNARY[:2]),
    Case("logsumexp", lambda L, a: a.logsumexp(1), UNARY[:2] + [((0, 3),)]),
    Case("cumsum", lambda L, a: a.cumsum(1), UNARY[:2], rtol_scale=10),
    Case("norm", lambda L, a: a.norm(), UNARY[:2] + [((5,),)]),
    Case("norm_dim", lambda L, a: a.norm(dim=1, keepdim=True), UNARY[:2]),
    Case("norm_p1", lambda L, a: a.norm(p=1), UNARY[:2], domain=away_from_zero),
    Case("norm_p3", lambda L, a: a.norm(p=3, dim=0), UNARY[:2], domain=away_from_zero),
    # linear algebra
    Case("matmul", lambda L, a, b: a @ b,
         [((3, 4), (4, 5)), ((4,), (4, 2)), ((3, 4), (4,)), ((4,), (4,)),
          ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (3, 4, 2)), ((0, 4), (4, 2))]),
    Case("bmm", lambda L, a, b: L.bmm(a, b), [((2, 3, 4), (2, 4, 5))]),
    Case("einsum_matmul", lambda L, a, b: L.einsum("ij,jk->ik", a, b), [((3, 4), (4, 5))]),
    Case("einsum_batch_outer", lambda L, a, b: L.einsum("bi,bj->bij", a, b),
         [((2, 3), (2, 4))]),
    Case("einsum_ellipsis_sum", lambda L, a, b: L.einsum("...ij,jk", a, b),
         [((2, 3, 4), (4, 5))]),
    Case("einsum_reduce_own", lambda L, a, b: L.einsum("ij,k->i", a, b), [((3, 4), (5,))]),
    # shapes
    Case("reshape", lambda L, a: a.reshape(4, -1), [((2, 3, 2),), ((4, 3),)]),
    Case("view", lambda L, a: a.reshape(-1).view(3, 4), [((3, 4),)]),
    Case("flatten", lambda L, a: a.flatten(1), [((2, 3, 2),)]),
    Case("squeeze_unsqueeze", lambda L, a: a.unsqueeze(1).squeeze(0), [((1, 3),), ((2, 3),)]),
    Case("permute", lambda L, a: a.permute(2, 0, 1), [((2, 3, 4),)]),
    Case("transpose", lambda L, a: a.transpose(0, 2), [((2, 3, 4),)]),
    Case("T", lambda L, a: a.T * 1, [((3, 4),)]),
    Case("expand", lambda L, a: a.expand(2, 3, 4), [((3, 1),), ((1, 4),)]),
    Case("repeat", lambda L, a: a.repeat(2, 1, 3), [((3, 2),), ((2,),)]),
    Case("flip", lambda L, a: a.flip(0, 1), [((3, 4),)]),
    Case("cat", lambda L, a, b: L.cat([a, b, a], 1), [((2, 3), (2, 1)), ((2, 0), (2, 2))]),
    Case("stack", lambda L, a, b: L.stack([a, b], 1), [((2, 3), (2, 3))]),
    Case("split", lambda L, a: tuple(a.split(2, 1)), [((3, 5),)]),
    Case("split_sizes", lambda L, a: tuple(a.split([1, 3], 0)), [((4, 2),)]),
    Case("chunk_partial_use", lambda L, a: a.chunk(3, 0)[1] * 2, [((6, 2),)]),
    Case("pad_constant", lambda L, a: L.nn.functional.pad(a, (1, 2, 0, 1)) if L is torch
         else L.pad(a, (1, 2, 0, 1)), [((2, 3),), ((2, 2, 3),)]),
    Case("pad_reflect", lambda L, a: L.nn.functional.pad(a, (2, 1), mode="reflect")
         if L is torch else L.pad(a, (2, 1), mode="reflect"), [((2, 4),)]),
    Case("pad_replicate", lambda L, a: L.nn.functional.pad(a, (2, 1, 1, 1), mode="replicate")
         if L is torch else L.pad(a, (2, 1, 1, 1), mode="replicate"), [((1, 2, 3),)]),
    # indexing
    Case("getitem_basic", lambda L, a: a[1:, None, ::2, -1], [((3, 4, 2),)]),
    Case("getitem_ellipsis", lambda L, a: a[..., 1], [((2, 3, 2),)]),
    Case("getitem_int_array", lambda L, a, i: a[i], [((4, 3), idx([0, 2, 2, 3]))]),
    Case("getitem_bool_mask", lambda L, a, m: a[m],
         [((3, 4), idx([[True, False, True, True]] * 3))]),
    Case("getitem_mixed", lambda L, a, i: a[1:, i], [((3, 4), idx([3, 0, 0]))]),
    Case("gather", lambda L, a, i: a.gather(1, i), [((3, 4), idx([[0, 1], [3, 3], [2, 0]]))]),
    Case("scatter_add", lambda L, a, i, s: a.scatter_add(1, i, s),
         [((3, 4), idx([[0, 1], [3, 3], [2, 0]]), (3, 2))]),
    Case("index_select", lambda L, a, i: a.index_select(1, i), [((3, 4), idx([3, 1, 1]))]),
    # no gradient: integer or boolean results (forward compared with torch)
    Case("argmax", lambda L, a: (a.argmax(), a.argmax(1), a.argmin(0, keepdim=True)),
         UNARY[:2]),
    Case("comparisons", lambda L, a, b: (a < b, a >= b, a == a, a != b, (a > 0) & (b > 0)),
         BINARY[:4]),
    Case("one_hot", lambda L, i: L.nn.functional.one_hot(i, 5) if L is torch
         else L.one_hot(i, 5), [(idx([0, 4, 2, 2]),)]),
    Case("masked_fill", lambda L, a, m: a.masked_fill(m, 2.0),
         [((3, 4), idx([[True, False, True, False]] * 3)), ((2, 3), idx([False, True, True]))]),
]


(test_gradchecks_float64, test_matches_torch, test_gradchecks_cuda,
 test_matches_torch_cuda) = standard_tests(CASES)
