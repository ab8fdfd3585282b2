"""conv2d's kernel paths (pipeflow/ops/conv.py) through the op harness, in every float
dtype: pointwise convs (no columns), strided 1x1, grouped and depthwise (products with a
contraction of length 1), dilation with stride, asymmetric padding, and the transposed
conv over them; then the batch split into one-sample chunks, and the reused workspaces:
results never alias them, across calls or threads."""
import threading

import numpy as np
import pytest

from op_harness import Case, compare_with_torch, standard_tests, torch

import pipeflow as pf
from pipeflow.ops import conv

# torch's note that its 'same' padding with an even kernel copies the input
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")


def F(L):
    return L.nn.functional


CASES = [
    Case("pointwise_groups_bias", lambda L, x, w, b: F(L).conv2d(x, w, b, groups=2),
         [((2, 4, 3, 5), (6, 2, 1, 1), (6,))]),
    Case("pointwise_stride2", lambda L, x, w: F(L).conv2d(x, w, stride=2),
         [((2, 3, 5, 6), (4, 3, 1, 1))]),
    Case("pointwise_padded", lambda L, x, w: F(L).conv2d(x, w, padding=(1, 0)),
         [((1, 3, 2, 3), (2, 3, 1, 1))]),
    Case("depthwise_multiplier_stride", lambda L, x, w: F(L).conv2d(x, w, None, 2, 1, 1, 3),
         [((2, 3, 5, 5), (6, 1, 3, 3))]),
    Case("depthwise", lambda L, x, w: F(L).conv2d(x, w, padding=1, groups=3),
         [((2, 3, 5, 4), (3, 1, 3, 3))]),
    Case("depthwise_pointwise", lambda L, x, w: F(L).conv2d(x, w, groups=3),
         [((2, 3, 2, 3), (3, 1, 1, 1))]),
    Case("dilation_stride_asymmetric", lambda L, x, w: F(L).conv2d(x, w, None, (2, 1), (2, 0),
                                                                   (1, 2)),
         [((1, 2, 7, 8), (3, 2, 2, 3))]),
    Case("same_even_kernel", lambda L, x, w: F(L).conv2d(x, w, padding="same", dilation=(1, 2)),
         [((1, 2, 5, 6), (2, 2, 4, 2))]),
    Case("transpose_groups_dilation", lambda L, x, w: F(L).conv_transpose2d(
        x, w, None, (2, 1), (1, 0), (1, 0), 2, (1, 2)), [((1, 4, 3, 4), (4, 2, 3, 2))]),
    Case("transpose_output_padding_below_dilation", lambda L, x, w: F(L).conv_transpose2d(
        x, w, output_padding=1, dilation=2), [((1, 2, 3, 3), (2, 2, 2, 2))]),
    Case("transpose_pointwise", lambda L, x, w: F(L).conv_transpose2d(x, w),
         [((2, 3, 2, 3), (3, 2, 1, 1))]),
]

(test_gradchecks_float64, test_matches_torch, test_gradchecks_cuda,
 test_matches_torch_cuda) = standard_tests(CASES)

CHUNKED = [
    Case("chunked_padded_groups", lambda L, x, w: F(L).conv2d(x, w, None, 1, 1, 1, 2),
         [((5, 4, 6, 5), (4, 2, 3, 3))]),
    Case("chunked_pointwise", lambda L, x, w: F(L).conv2d(x, w), [((3, 2, 3, 3), (4, 2, 1, 1))]),
]


@pytest.mark.skipif(torch is None, reason="torch (the ref extra) is the reference")
@pytest.mark.parametrize("keep", [conv._KEEP_BYTES, 0], ids=["workspace", "fresh"])
@pytest.mark.parametrize("case", CHUNKED, ids=str)
def test_one_sample_per_chunk_matches_torch(monkeypatch, case, keep):
    """The batch split into one-sample chunks, with workspaces reused or (above the size
    kept) allocated fresh."""
    monkeypatch.setitem(conv._CHUNK_BYTES, "cpu", 1)
    monkeypatch.setattr(conv, "_KEEP_BYTES", keep)
    for dtype in ("float64", "float32", "float16"):
        compare_with_torch(case, dtype, noncontiguous=False)


def _conv_and_grads(x, w):
    x, w = pf.tensor(x, requires_grad=True), pf.tensor(w, requires_grad=True)
    y = F(pf).conv2d(x, w, padding=1)
    y.backward(pf.ones_like(y))
    return y.detach().numpy(), x.grad.numpy(), w.grad.numpy()


def test_results_do_not_alias_the_workspaces():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    x1, x2 = (rng.standard_normal((2, 3, 6, 6)).astype(np.float32) for _ in range(2))
    first = _conv_and_grads(x1, w)
    kept = [a.copy() for a in first]
    _conv_and_grads(x2, w)
    for a, b in zip(first, kept):
        np.testing.assert_array_equal(a, b)


def test_threads_have_their_own_workspaces():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    xs = [rng.standard_normal((4, 3, 24, 24)).astype(np.float32) for _ in range(4)]
    expected = [_conv_and_grads(x, w) for x in xs]
    got = [None] * len(xs)

    def work(i):
        for _ in range(5):
            got[i] = _conv_and_grads(xs[i], w)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e, g in zip(expected, got):
        for a, b in zip(e, g):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-5)
