"""Convolution, pooling and normalisation through the op harness: gradcheck and
gradgradcheck in float64 (the conv adjoints' double backward included), then forward and
backward against torch in float64 and float32, contiguous and transposed inputs."""
import numpy as np

from op_harness import Case, standard_tests, torch

import pipeflow as pf

F64_32 = ("float64", "float32")


def F(L):
    return L.nn.functional


def batch_norm_train(L, x, w, b):
    mean, var = L.zeros(3, dtype=x.dtype), L.ones(3, dtype=x.dtype)
    return F(L).batch_norm(x, mean, var, w, b, True, 0.1, 1e-5)


CASES = [
    Case("conv2d", lambda L, x, w, b: F(L).conv2d(x, w, b), [((2, 3, 5, 4), (2, 3, 3, 2), (2,))],
         dtypes=F64_32),
    Case("conv2d_stride_pad_dilation", lambda L, x, w: F(L).conv2d(x, w, None, 2, 1, 2),
         [((1, 2, 6, 6), (3, 2, 2, 2))], dtypes=F64_32),
    Case("conv2d_groups_same", lambda L, x, w: F(L).conv2d(x, w, padding="same", groups=2),
         [((1, 4, 4, 4), (2, 2, 3, 3))], dtypes=F64_32),
    Case("conv1d", lambda L, x, w: F(L).conv1d(x, w, stride=2, padding=1), [((2, 3, 7), (2, 3, 3))],
         dtypes=F64_32),
    Case("conv_transpose2d", lambda L, x, w: F(L).conv_transpose2d(x, w, None, 2, 1, 1),
         [((1, 2, 3, 3), (2, 3, 3, 3))], dtypes=F64_32),
    Case("max_pool2d", lambda L, x: F(L).max_pool2d(x, 3, 2, 1, ceil_mode=True),
         [((2, 2, 5, 6),)], dtypes=F64_32),
    Case("avg_pool2d", lambda L, x: F(L).avg_pool2d(x, 3, 2, 1, count_include_pad=False),
         [((2, 2, 5, 6),)], dtypes=F64_32),
    Case("adaptive_avg_pool2d", lambda L, x: F(L).adaptive_avg_pool2d(x, (2, 3)),
         [((1, 2, 5, 7),)], dtypes=F64_32),
    Case("adaptive_max_pool2d", lambda L, x: F(L).adaptive_max_pool2d(x, (2, 3)),
         [((1, 2, 5, 7),)], dtypes=F64_32),
    Case("batch_norm_train", batch_norm_train, [((4, 3, 2, 2), (3,), (3,))], dtypes=F64_32),
    Case("layer_norm", lambda L, x, w: F(L).layer_norm(x, (4,), w), [((3, 4), (4,))],
         dtypes=F64_32),
    Case("group_norm", lambda L, x: F(L).group_norm(x, 2), [((2, 4, 3),)], dtypes=F64_32),
    Case("local_response_norm", lambda L, x: F(L).local_response_norm(x, 3, 0.1, 0.75, 1.0),
         [((2, 5, 3),)], dtypes=F64_32),
]


(test_gradchecks_float64, test_matches_torch, test_gradchecks_cuda,
 test_matches_torch_cuda) = standard_tests(CASES)


def test_max_pool_ties_send_the_gradient_to_one_input_like_torch():
    x = np.zeros((1, 1, 4, 4))
    ours = pf.tensor(x, requires_grad=True)
    ref = torch.tensor(x, requires_grad=True)
    pf.nn.functional.max_pool2d(ours, 2).sum().backward()
    torch.nn.functional.max_pool2d(ref, 2).sum().backward()
    np.testing.assert_array_equal(ours.grad.numpy(), ref.grad.numpy())
