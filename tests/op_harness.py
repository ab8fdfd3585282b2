"""The op test harness: a case names an op (one function written against both pipeflow
and torch) and its inputs; the harness checks it the same way every time:

1. gradcheck and gradgradcheck in float64 (analytic vs numerical Jacobian, of the op and
   of its backward), pipeflow alone;
2. forward and backward against torch in every float dtype, on contiguous and on
   non-contiguous (transposed) inputs, when torch is installed;
3. all of it on CUDA too, when CuPy and a GPU are present.

Inputs: a shape tuple is a random float input (differentiable); a NumPy array is a
fixed input (indices, masks: not differentiable). `domain` maps the raw normal samples
into the op's domain (e.g. positive numbers for log)."""
import dataclasses
from typing import Callable

import numpy as np
import pytest

import pipeflow as pf

try:
    import torch
except ImportError:  # the reference is optional; comparisons then skip
    torch = None

FLOAT_DTYPES = ["float64", "float32", "float16", "bfloat16"]
TOLERANCE = {"float64": (1e-7, 1e-9), "float32": (1e-4, 1e-5), "float16": (2e-2, 2e-2),
             "bfloat16": (8e-2, 8e-2)}


@dataclasses.dataclass
class Case:
    name: str
    fn: Callable                    # fn(lib, *inputs) -> tensor or tuple of tensors
    inputs: list                    # input sets: tuples of shapes / fixed arrays
    domain: Callable = staticmethod(lambda x: x)
    dtypes: tuple = tuple(FLOAT_DTYPES)
    gradcheck: bool = True
    rtol_scale: float = 1.0         # ops that amplify rounding (e.g. cumsum, var) get slack

    def __str__(self):
        return self.name


def make_inputs(case, spec, seed):
    """Float64 arrays for one input set, the same on every call with the same seed."""
    rng = np.random.default_rng(seed)
    arrays = []
    for s in spec:
        if isinstance(s, tuple):
            arrays.append(case.domain(rng.standard_normal(s)))
        else:
            arrays.append(np.asarray(s))
    return arrays


def _to_lib(lib, arrays, dtype, device, requires_grad, noncontiguous):
    """Leaf tensors of `lib` for the arrays; float ones in `dtype`, and with
    `noncontiguous` every float input of 2+ dims is a transposed view."""
    out = []
    for a in arrays:
        kw = {"device": device} if lib is pf else {}
        if a.dtype.kind != "f":
            out.append(lib.tensor(a, **kw))
            continue
        flip = noncontiguous and a.ndim >= 2
        t = lib.tensor(np.ascontiguousarray(a.T) if flip else a, dtype=getattr(lib, dtype), **kw)
        t = t.permute(*reversed(range(a.ndim))).detach() if flip else t
        out.append(t.requires_grad_() if requires_grad else t)
    return out


def _outputs(result):
    return list(result) if isinstance(result, (tuple, list)) else [result]


def _np(t):
    if isinstance(t, pf.Tensor):
        d = t.detach()._data
        d = d if isinstance(d, np.ndarray) else d.get()
        return np.asarray(d.astype(np.float64) if d.dtype.kind in "fV" else d)
    t = t.detach()
    return t.to(torch.float64).numpy() if t.is_floating_point() else t.numpy()


def run_gradcheck(case, device="cpu", second_order=False):
    """gradcheck (or, with `second_order`, gradgradcheck: backward differentiated again
    with create_graph=True) of the case on every input set, in float64."""
    check = pf.autograd.gradgradcheck if second_order else pf.autograd.gradcheck
    for k, spec in enumerate(case.inputs):
        arrays = make_inputs(case, spec, seed=k)
        inputs = _to_lib(pf, arrays, "float64", device, True, False)
        inputs = [t if t._data.dtype.kind == "f" else t.requires_grad_(False) for t in inputs]
        check(lambda *xs: case.fn(pf, *xs), tuple(inputs))


def compare_with_torch(case, dtype, noncontiguous, device="cpu"):
    rtol, atol = TOLERANCE[dtype]
    rtol *= case.rtol_scale
    atol *= case.rtol_scale
    for k, spec in enumerate(case.inputs):
        arrays = make_inputs(case, spec, seed=k)
        ours_in = _to_lib(pf, arrays, dtype, device, True, noncontiguous)
        ref_in = _to_lib(torch, arrays, dtype, "cpu", True, noncontiguous)
        ours_in = [t if t._data.dtype.kind in "fV" else t.requires_grad_(False) for t in ours_in]
        ref_in = [t if t.is_floating_point() else t.requires_grad_(False) for t in ref_in]
        ours, ref = _outputs(case.fn(pf, *ours_in)), _outputs(case.fn(torch, *ref_in))
        assert len(ours) == len(ref), f"{case}: {len(ours)} outputs, torch gives {len(ref)}"
        where = f"{case} input set {k} ({dtype}, {'non-' if noncontiguous else ''}contiguous)"
        for i, (o, r) in enumerate(zip(ours, ref)):
            assert tuple(o.shape) == tuple(r.shape), f"{where}: output {i} shape"
            assert o.dtype.name == str(r.dtype).split(".")[-1], f"{where}: output {i} dtype"
            np.testing.assert_allclose(_np(o), _np(r), rtol, atol, err_msg=f"{where}: output {i}")
        # backward: a random weighting of every differentiable output
        rng = np.random.default_rng(100 + k)
        loss_ours, loss_ref = 0, 0
        for o, r in zip(ours, ref):
            if r.requires_grad:
                w = rng.standard_normal(tuple(r.shape))
                loss_ours = loss_ours + (o * pf.tensor(w, dtype=o.dtype, device=device)).sum()
                loss_ref = loss_ref + (r * torch.tensor(w, dtype=r.dtype)).sum()
        if isinstance(loss_ref, int):
            continue
        loss_ref.backward()
        loss_ours.backward()
        for i, (a, b) in enumerate(zip(ours_in, ref_in)):
            if b.requires_grad:
                if b.grad is None:
                    assert a.grad is None or not _np(a.grad).any(), f"{where}: grad {i}"
                    continue
                assert a.grad is not None, f"{where}: input {i} got no gradient"
                assert a.grad.dtype == a.dtype and tuple(a.grad.shape) == tuple(a.shape)
                np.testing.assert_allclose(_np(a.grad), _np(b.grad), rtol, atol * 10,
                                           err_msg=f"{where}: gradient of input {i}")


def cuda_available():
    return pf.cuda.is_available()


def params(cases):
    """pytest parameters: every case x its dtypes x contiguity."""
    return [pytest.param(c, d, nc, id=f"{c.name}-{d}-{'noncontig' if nc else 'contig'}")
            for c in cases for d in c.dtypes for nc in (False, True)
            if not (nc and not any(isinstance(s, tuple) and len(s) >= 2
                                   for spec in c.inputs for s in spec))]


def standard_tests(cases):
    """The harness's four tests over `cases`, for a test module to bind to test_* names:
    gradcheck + gradgradcheck in float64, torch comparisons, and both again on CUDA."""
    no_torch = pytest.mark.skipif(torch is None, reason="torch (the ref extra) is the reference")
    no_cuda = pytest.mark.skipif(not cuda_available(), reason="needs CuPy and an NVIDIA GPU")

    @pytest.mark.parametrize("case", cases, ids=str)
    def test_gradchecks_float64(case):
        run_gradcheck(case)
        run_gradcheck(case, second_order=True)

    @no_torch
    @pytest.mark.parametrize("case,dtype,noncontiguous", params(cases))
    def test_matches_torch(case, dtype, noncontiguous):
        compare_with_torch(case, dtype, noncontiguous)

    @pytest.mark.cuda
    @no_cuda
    @pytest.mark.parametrize("case", cases, ids=str)
    def test_gradchecks_cuda(case):
        run_gradcheck(case, device="cuda")
        run_gradcheck(case, device="cuda", second_order=True)

    @pytest.mark.cuda
    @no_cuda
    @no_torch
    @pytest.mark.parametrize("case,dtype,noncontiguous", params(cases))
    def test_matches_torch_cuda(case, dtype, noncontiguous):
        compare_with_torch(case, dtype, noncontiguous, device="cuda")

    return test_gradchecks_float64, test_matches_torch, test_gradchecks_cuda, \
        test_matches_torch_cuda
