"""The Tensor type, its factories and dtypes, checked against PyTorch's semantics.

Tests that compare with torch take the `torch` fixture, which skips them when the
reference (the `ref` extra) is not installed; everything else runs without torch."""
import re

import numpy as np
import pytest

import pipeflow as pf

CUDA = pf.cuda.is_available()


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="torch (the ref extra) is the reference")


def lib_dtype(lib, name):
    """pf.float32 / torch.float32 for a dtype name ('bool' included)."""
    return getattr(lib, name)


def tname(torch_dtype):
    """'float32' for torch.float32: the spelling pipeflow's dtype.name uses."""
    return str(torch_dtype).split(".")[-1]


def assert_same(pf_t, torch_t, rtol=1e-6, atol=1e-6):
    """Same shape, same dtype name and (close) values."""
    assert tuple(pf_t.shape) == tuple(torch_t.shape)
    assert pf_t.dtype.name == tname(torch_t.dtype)
    expected = torch_t.detach().float().numpy() if torch_t.dtype.is_floating_point else \
        torch_t.detach().numpy()
    actual = pf_t.detach().numpy()
    if actual.dtype.kind not in "biu":
        actual = actual.astype(np.float32)
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)
    else:
        np.testing.assert_array_equal(actual, expected)


# =====================================================================================
# Factories
# =====================================================================================
TENSOR_DATA = [1.5, 3, True, [1.0, 2.0], [1, 2], [True, False], [[1, 2.5], [3, 4]],
               [[True, 2], [3, 4]], [], np.arange(3, dtype=np.float64),
               np.arange(3, dtype=np.int32), np.array([1, 0], dtype=np.uint8)]


@pytest.mark.parametrize("data", TENSOR_DATA, ids=repr)
def test_tensor_default_dtype_matches_torch(torch, data):
    t, ref = pf.tensor(data), torch.tensor(data)
    assert t.dtype.name == tname(ref.dtype)
    assert tuple(t.shape) == tuple(ref.shape)
    np.testing.assert_array_equal(t.numpy(), ref.numpy())


def test_tensor_default_dtypes():
    assert pf.tensor(1.5).dtype == pf.float32
    assert pf.tensor([1, 2]).dtype == pf.int64
    assert pf.tensor([True]).dtype == pf.bool
    assert pf.tensor([1, 2.0]).dtype == pf.float32


def test_tensor_copies_its_data():
    a = np.zeros(3, dtype=np.float32)
    t = pf.tensor(a)
    a[0] = 5
    assert t.tolist() == [0.0, 0.0, 0.0]
    t2 = pf.tensor(t)
    t2.add_(1)
    assert t.tolist() == [0.0, 0.0, 0.0]


def test_tensor_dtype_device_requires_grad():
    t = pf.tensor([1, 2], dtype=pf.float64, device="cpu", requires_grad=True)
    assert t.dtype == pf.float64 and t.device == "cpu" and t.requires_grad and t.is_leaf
    assert pf.tensor([1.7, -2.2], dtype=pf.int32).tolist() == [1, -2]
    with pytest.raises(RuntimeError, match="floating point"):
        pf.tensor([1, 2], requires_grad=True)


def test_as_tensor_shares_memory_when_possible():
    a = np.arange(4, dtype=np.float32)
    t = pf.as_tensor(a)
    a[0] = 7
    assert t[0].item() == 7
    t2 = pf.as_tensor(a, dtype=pf.float64)  # a cast cannot share
    a[1] = 9
    assert t2.dtype == pf.float64 and t2[1].item() == 1
    x = pf.ones(2)
    assert pf.as_tensor(x) is x
    assert pf.as_tensor([1, 2]).dtype == pf.int64
    assert pf.as_tensor([1.0, 2]).dtype == pf.float32


def test_from_numpy_shares_memory_both_ways():
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = pf.from_numpy(a)
    assert t.dtype == pf.float64 and t.shape == (2, 3)
    a[0, 0] = 100
    assert t[0, 0].item() == 100
    t[1, 2] = -1
    assert a[1, 2] == -1
    t.add_(1)
    assert a[0, 0] == 101
    assert np.shares_memory(t.numpy(), a)


def test_from_numpy_rejects_non_arrays():
    with pytest.raises(TypeError):
        pf.from_numpy([1, 2, 3])


SIZED = ["zeros", "ones", "empty", "rand", "randn"]


@pytest.mark.parametrize("name", SIZED)
@pytest.mark.parametrize("size", [(2, 3), ((2, 3),), ([2, 3],)], ids=["f(2,3)", "f((2,3))",
                                                                      "f([2,3])"])
def test_sized_factories_accept_both_size_spellings(name, size):
    t = getattr(pf, name)(*size)
    assert t.shape == (2, 3)
    assert isinstance(t.shape, pf.Size)
    assert t.dtype == pf.float32
    assert t.device == "cpu"
    assert not t.requires_grad


@pytest.mark.parametrize("name", SIZED)
def test_sized_factories_options(name):
    fn = getattr(pf, name)
    t = fn(2, 3, dtype=pf.float64, device="cpu", requires_grad=True)
    assert t.dtype == pf.float64 and t.device == "cpu" and t.requires_grad and t.is_leaf
    t = fn(4, dtype=pf.float16, device=pf.device("cpu"))
    assert t.dtype == pf.float16 and t.shape == (4,)
    assert fn(()).shape == ()


def test_zeros_ones_values():
    assert pf.zeros(2, 2).tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert pf.ones(3, dtype=pf.int32).tolist() == [1, 1, 1]
    assert pf.ones(3, dtype=pf.int32).dtype == pf.int32
    assert pf.zeros(2, dtype=pf.bool).tolist() == [False, False]
    assert pf.zeros(0, 3).shape == (0, 3)


@pytest.mark.parametrize("fill", [7, 1.5, True, -2])
def test_full_default_dtype_and_values(torch, fill):
    t, ref = pf.full((2, 3), fill), torch.full((2, 3), fill)
    assert_same(t, ref)


def test_full_options():
    t = pf.full((2,), 3, dtype=pf.float64, requires_grad=True)
    assert t.dtype == pf.float64 and t.requires_grad and t.tolist() == [3.0, 3.0]
    assert pf.full([2, 2], 1.5).shape == (2, 2)
    assert pf.full((), 4).shape == ()


ARANGE = [((5,), {}), ((1, 7, 2), {}), ((0, 1, 0.1), {}), ((0.5, 3), {}), ((5.0,), {}),
          ((-3, 3, 0.5), {}), ((10, 0, -3), {}), ((5,), {"dtype": "float64"}),
          ((0, 2, 0.25), {"dtype": "float16"}), ((1, 4), {"dtype": "int32"})]


@pytest.mark.parametrize("args,kw", ARANGE, ids=[str(a) + str(k) for a, k in ARANGE])
def test_arange_matches_torch(torch, args, kw):
    pkw = {k: lib_dtype(pf, v) for k, v in kw.items()}
    tkw = {k: lib_dtype(torch, v) for k, v in kw.items()}
    assert_same(pf.arange(*args, **pkw), torch.arange(*args, **tkw), rtol=1e-3, atol=1e-3)


def test_arange_default_dtypes():
    assert pf.arange(5).dtype == pf.int64
    assert pf.arange(0, 5, 2).tolist() == [0, 2, 4]
    assert pf.arange(2.0).dtype == pf.float32
    assert pf.arange(0, 1, 0.5).tolist() == [0.0, 0.5]
    t = pf.arange(3.0, requires_grad=True)
    assert t.requires_grad and t.is_leaf


LINSPACE = [(0, 1, 5), (-1, 1, 7), (2, 10, 1), (0, 1, 0), (3, -3, 4), (0.5, 2.5, 11)]


@pytest.mark.parametrize("args", LINSPACE, ids=str)
def test_linspace_matches_torch(torch, args):
    assert_same(pf.linspace(*args), torch.linspace(*args), rtol=1e-6, atol=1e-6)


def test_linspace_dtype(torch):
    assert_same(pf.linspace(0, 10, 5, dtype=pf.int64), torch.linspace(0, 10, 5,
                                                                      dtype=torch.int64))
    assert_same(pf.linspace(0, 1, 4, dtype=pf.float64), torch.linspace(0, 1, 4,
                                                                       dtype=torch.float64))


@pytest.mark.parametrize("args,dt", [((3,), None), ((2, 4), None), ((4, 2), None),
                                     ((3,), "int64"), ((2, 3), "bool")])
def test_eye_matches_torch(torch, args, dt):
    t = pf.eye(*args) if dt is None else pf.eye(*args, dtype=lib_dtype(pf, dt))
    ref = torch.eye(*args) if dt is None else torch.eye(*args, dtype=lib_dtype(torch, dt))
    assert_same(t, ref)


def test_eye_requires_grad():
    t = pf.eye(2, requires_grad=True, device="cpu")
    assert t.requires_grad and t.dtype == pf.float32


def test_random_factory_defaults():
    assert pf.rand(3).dtype == pf.float32
    assert pf.randn(3).dtype == pf.float32
    assert pf.randint(10, (4,)).dtype == pf.int64
    assert pf.randint(2, 10, (2, 2)).shape == (2, 2)
    assert pf.randperm(5).dtype == pf.int64
    assert sorted(pf.randperm(7).tolist()) == list(range(7))
    assert pf.randperm(4, dtype=pf.int32).dtype == pf.int32
    assert pf.randint(0, 3, (5,), dtype=pf.uint8).dtype == pf.uint8
    r = pf.rand(2, 2, requires_grad=True)
    assert r.requires_grad


def test_rand_rejects_integer_dtype(torch):
    with pytest.raises(RuntimeError):
        torch.rand(3, dtype=torch.int64)
    with pytest.raises(RuntimeError):
        pf.rand(3, dtype=pf.int64)


@pytest.mark.parametrize("name", ["zeros_like", "ones_like", "empty_like", "rand_like",
                                  "randn_like"])
def test_like_factories(name):
    fn = getattr(pf, name)
    src = pf.ones(2, 3, dtype=pf.float64)
    t = fn(src)
    assert t.shape == (2, 3) and t.dtype == pf.float64 and t.device == "cpu"
    assert not t.requires_grad
    t = fn(src, dtype=pf.float16, device="cpu", requires_grad=True)
    assert t.dtype == pf.float16 and t.requires_grad and t.shape == (2, 3)
    if name == "zeros_like":
        assert t.tolist() == [[0.0] * 3] * 2
    if name == "ones_like":
        assert t.tolist() == [[1.0] * 3] * 2


def test_zeros_like_keeps_int_dtype():
    t = pf.zeros_like(pf.arange(4))
    assert t.dtype == pf.int64 and t.tolist() == [0, 0, 0, 0]


def test_full_like(torch):
    assert_same(pf.full_like(pf.arange(3), 7), torch.full_like(torch.arange(3), 7))
    assert_same(pf.full_like(pf.arange(3), 2.7), torch.full_like(torch.arange(3), 2.7))
    assert_same(pf.full_like(pf.zeros(2), 2), torch.full_like(torch.zeros(2), 2))
    t = pf.full_like(pf.zeros(2), 1.5, dtype=pf.float64, requires_grad=True)
    assert t.dtype == pf.float64 and t.requires_grad


# =====================================================================================
# Dtypes
# =====================================================================================
NAMES = ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"]


def all_dtype_names():
    names = list(NAMES)
    try:
        import ml_dtypes  # noqa: F401
        names.append("bfloat16")
    except ImportError:
        pass
    return names


@pytest.mark.parametrize("name", all_dtype_names())
def test_dtype_objects(name):
    d = getattr(pf, name)
    assert isinstance(d, pf.dtype)
    assert d.name == name
    assert repr(d) == f"pipeflow.{name}"
    assert d.is_floating_point == (name.startswith("float") or name == "bfloat16")
    assert pf.zeros(2, dtype=d).dtype == d


def test_dtype_aliases():
    assert pf.half is pf.float16 and pf.float is pf.float32 and pf.double is pf.float64
    assert pf.short is pf.int16 and pf.int is pf.int32 and pf.long is pf.int64


def test_bfloat16_exists_with_ml_dtypes():
    pytest.importorskip("ml_dtypes")
    t = pf.tensor([1.0, 2.5, -3.0], dtype=pf.bfloat16)
    assert t.dtype == pf.bfloat16 and repr(pf.bfloat16) == "pipeflow.bfloat16"
    assert t.float().tolist() == [1.0, 2.5, -3.0]
    assert t.is_floating_point()


@pytest.mark.parametrize("name", all_dtype_names())
def test_to_dtype_values_match_torch(torch, name):
    data = [0.0, 1.5, 2.7, 100.0, 0.25] if name in ("uint8", "bool") else \
        [-1.5, 0.0, 2.7, 100.0, -0.25]
    t = pf.tensor(data).to(lib_dtype(pf, name))
    ref = torch.tensor(data).to(lib_dtype(torch, name))
    assert_same(t, ref, rtol=1e-2, atol=1e-2)


def test_to_dtype_from_int_and_bool(torch):
    assert_same(pf.tensor([1, 0, 3]).to(pf.bool), torch.tensor([1, 0, 3]).to(torch.bool))
    assert_same(pf.tensor([True, False]).to(pf.float32),
                torch.tensor([True, False]).to(torch.float32))
    assert_same(pf.tensor([300, -1]).to(pf.int16), torch.tensor([300, -1]).to(torch.int16))


def test_to_same_dtype_returns_self():
    t = pf.ones(3)
    assert t.to(pf.float32) is t
    c = t.to(pf.float32, copy=True)
    assert c is not t and not np.shares_memory(c.numpy(), t.numpy())


@pytest.mark.parametrize("name", all_dtype_names())
def test_type_name_matches_torch(torch, name):
    t = pf.zeros(2, dtype=lib_dtype(pf, name))
    ref = torch.zeros(2, dtype=lib_dtype(torch, name))
    assert t.type() == ref.type().replace("torch.", "pipeflow.")


def test_type_names():
    assert pf.zeros(1).type() == "pipeflow.FloatTensor"
    assert pf.zeros(1, dtype=pf.int64).type() == "pipeflow.LongTensor"
    assert pf.zeros(1).type(pf.float64).dtype == pf.float64


@pytest.mark.parametrize("method,name", [("float", "float32"), ("double", "float64"),
                                         ("half", "float16"), ("long", "int64"),
                                         ("int", "int32"), ("bool", "bool")])
def test_cast_methods(method, name):
    t = getattr(pf.tensor([0.0, 1.5, -2.0]), method)()
    assert t.dtype.name == name
    expected = np.array([0.0, 1.5, -2.0]).astype(getattr(pf, name).np).tolist()
    assert t.tolist() == expected


# Promotion: (dtype a, shape a, dtype b or python scalar, shape b)
PROMOTE_TT = [
    ("int8", (3,), "uint8", (3,)), ("uint8", (3,), "int16", (3,)),
    ("int32", (3,), "int64", (3,)), ("int64", (3,), "float16", (3,)),
    ("float16", (3,), "float32", (3,)), ("float32", (3,), "float64", (3,)),
    ("bool", (3,), "int8", (3,)), ("bool", (3,), "float16", (3,)),
    ("bool", (3,), "bool", (3,)), ("uint8", (3,), "bool", (3,)),
    ("int16", (2, 3), "int32", (3,)), ("uint8", (3,), "uint8", (3,)),
    # 0-d tensors with dimensioned ones
    ("int64", (), "int32", (3,)), ("float64", (), "float16", (3,)),
    ("float64", (), "int32", (3,)), ("int64", (), "uint8", (3,)),
    ("float32", (), "int8", (3,)), ("int32", (), "int64", ()),
    ("bool", (), "int8", (3,)), ("int16", (3,), "float64", ()),
]
PROMOTE_BF16 = [("bfloat16", (3,), "int32", (3,)), ("bfloat16", (3,), "float16", (3,)),
                ("bfloat16", (3,), "float32", (3,)), ("bfloat16", (3,), "float64", (3,)),
                ("bool", (3,), "bfloat16", (3,)), ("float64", (), "bfloat16", (3,))]
PROMOTE_TS = [("int32", 1), ("int32", 1.5), ("uint8", 1), ("bool", 1), ("bool", 1.5),
              ("bool", True), ("float16", 1.5), ("float64", 1), ("int64", True),
              ("int8", 2.0), ("float16", 10000), ("float32", 1.5),
              # NumPy scalars count as Python scalars (they don't widen the tensor)
              ("float32", np.float64(1.5)), ("float16", np.float32(2.0)),
              ("int32", np.int64(3)), ("int32", np.float64(1.5)), ("uint8", np.int64(2))]


def _ones(lib, name, shape):
    return lib.ones(shape, dtype=lib_dtype(lib, name))


def _check_binary(torch, op, a_spec, b_spec):
    (da, sa), (db, sb) = a_spec, b_spec
    pa, pb = _ones(pf, da, sa), _ones(pf, db, sb)
    ta, tb = _ones(torch, da, sa), _ones(torch, db, sb)
    ref = op(ta, tb)
    out = op(pa, pb)
    assert out.dtype.name == tname(ref.dtype), f"{da}{sa} with {db}{sb}"
    assert tuple(out.shape) == tuple(ref.shape)


@pytest.mark.parametrize("da,sa,db,sb", PROMOTE_TT, ids=lambda v: str(v))
@pytest.mark.parametrize("op", ["add", "mul"])
def test_promotion_tensor_tensor(torch, op, da, sa, db, sb):
    fn = (lambda x, y: x + y) if op == "add" else (lambda x, y: x * y)
    _check_binary(torch, fn, (da, sa), (db, sb))
    _check_binary(torch, fn, (db, sb), (da, sa))


@pytest.mark.parametrize("da,sa,db,sb", PROMOTE_BF16, ids=lambda v: str(v))
def test_promotion_bfloat16(torch, da, sa, db, sb):
    pytest.importorskip("ml_dtypes")
    _check_binary(torch, lambda x, y: x + y, (da, sa), (db, sb))
    _check_binary(torch, lambda x, y: x * y, (db, sb), (da, sa))


@pytest.mark.parametrize("name,scalar", PROMOTE_TS, ids=lambda v: repr(v))
def test_promotion_tensor_scalar(torch, name, scalar):
    for fn in (lambda x: x + scalar, lambda x: scalar + x, lambda x: x * scalar):
        ref = fn(_ones(torch, name, (2,)))
        out = fn(_ones(pf, name, (2,)))
        assert out.dtype.name == tname(ref.dtype)
        np.testing.assert_allclose(out.numpy().astype(np.float64),
                                   ref.double().numpy(), rtol=1e-3)


DIVISION = [("int32", (3,), "int32", (3,)), ("int64", (3,), "int64", (3,)),
            ("uint8", (3,), "int8", (3,)), ("bool", (3,), "bool", (3,)),
            ("float16", (3,), "int64", (3,)), ("int32", (3,), "float64", ()),
            ("int64", (3,), "float16", ()), ("float32", (3,), "float64", (3,))]


@pytest.mark.parametrize("da,sa,db,sb", DIVISION, ids=lambda v: str(v))
def test_true_division_promotion(torch, da, sa, db, sb):
    def div(x, y):
        return x / y
    _check_binary(torch, div, (da, sa), (db, sb))


def test_int_true_division_is_float32():
    a, b = pf.tensor([1, 2, 7]), pf.tensor([2, 4, 2])
    out = a / b
    assert out.dtype == pf.float32
    assert out.tolist() == [0.5, 0.5, 3.5]
    assert (a / 2).dtype == pf.float32
    assert (7 / b).dtype == pf.float32
    assert (pf.tensor([1, 2], dtype=pf.int32) / pf.tensor([3, 4], dtype=pf.int32)).dtype \
        == pf.float32


def test_int_true_division_matches_torch(torch):
    assert_same(pf.arange(3) / pf.arange(1, 4), torch.arange(3) / torch.arange(1, 4))


# PyTorch's results, written out so that promotion is checked without torch installed too
EXPECTED_PROMOTION = [
    (("int8", (3,)), ("uint8", (3,)), "int16"), (("int64", (3,)), ("float16", (3,)), "float16"),
    (("bool", (3,)), ("int8", (3,)), "int8"), (("float32", (3,)), ("float64", (3,)), "float64"),
    (("int64", ()), ("int32", (3,)), "int32"), (("float64", ()), ("int32", (3,)), "float64"),
    (("float64", ()), ("float16", (3,)), "float16"), (("int32", (3,)), 1.5, "float32"),
    (("uint8", (3,)), 1, "uint8"), (("bool", (3,)), 1, "int64"),
    (("float16", (3,)), 1.5, "float16"), (("bool", (3,)), True, "bool"),
]


@pytest.mark.parametrize("a,b,expected", EXPECTED_PROMOTION, ids=str)
def test_promotion_table(a, b, expected):
    x = _ones(pf, *a)
    y = _ones(pf, *b) if isinstance(b, tuple) else b
    assert (x + y).dtype.name == expected
    assert (y + x).dtype.name == expected
    assert (x * y).dtype.name == expected


def test_bfloat16_division_stays_bfloat16(torch):
    pytest.importorskip("ml_dtypes")
    a = pf.tensor([1.0, 3.0], dtype=pf.bfloat16)
    ta = torch.tensor([1.0, 3.0], dtype=torch.bfloat16)
    assert_same(a / a, ta / ta, rtol=1e-2)
    assert_same(a / 2, ta / 2, rtol=1e-2)


# =====================================================================================
# Metadata and conversion
# =====================================================================================
def test_shape_and_size():
    t = pf.zeros(2, 3)
    assert t.shape == (2, 3) and isinstance(t.shape, tuple) and isinstance(t.shape, pf.Size)
    assert repr(t.shape) == "pipeflow.Size([2, 3])"
    assert t.size() == (2, 3) and isinstance(t.size(), pf.Size)
    assert t.size(0) == 2 and t.size(1) == 3 and t.size(-1) == 3
    assert t.shape.numel() == 6
    assert repr(pf.zeros(()).shape) == "pipeflow.Size([])"
    a, b = t.shape
    assert (a, b) == (2, 3)


def test_metadata():
    t = pf.zeros(2, 3, 4)
    assert t.dtype == pf.float32
    assert t.device == "cpu" and t.device == pf.device("cpu")
    assert repr(t.device) == "device(type='cpu')" and str(t.device) == "cpu"
    assert t.ndim == 3 and t.dim() == 3
    assert t.numel() == 24 and pf.numel(t) == 24
    assert not t.is_cuda
    assert pf.zeros(()).ndim == 0 and pf.zeros(()).numel() == 1


def test_contiguous():
    t = pf.arange(6.0).reshape(2, 3)
    assert t.is_contiguous()
    assert t.contiguous() is t
    tt = t.T
    assert tt.shape == (3, 2) and not tt.is_contiguous()
    c = tt.contiguous()
    assert c.is_contiguous() and c.tolist() == tt.tolist()
    assert c.tolist() == [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]
    assert not np.shares_memory(c.numpy(), t.numpy())


def test_clone_is_independent():
    t = pf.arange(3.0)
    c = t.clone()
    c.add_(10)
    assert t.tolist() == [0.0, 1.0, 2.0] and c.tolist() == [10.0, 11.0, 12.0]
    assert c.dtype == t.dtype and c.shape == t.shape


def test_clone_keeps_graph():
    x = pf.ones(2, requires_grad=True)
    c = x.clone()
    assert c.requires_grad and c.grad_fn is not None
    c.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0]


def test_detach_shares_memory():
    x = pf.ones(3, requires_grad=True)
    d = x.detach()
    assert not d.requires_grad and d.grad_fn is None
    assert np.shares_memory(d.numpy(), x.detach().numpy())
    d[0] = 5
    assert x.tolist() == [5.0, 1.0, 1.0]


def test_numpy_shares_memory():
    t = pf.zeros(3)
    a = t.numpy()
    a[1] = 4
    assert t.tolist() == [0.0, 4.0, 0.0]
    t.fill_(2)
    assert a.tolist() == [2.0, 2.0, 2.0]
    assert a.dtype == np.float32


def test_numpy_refuses_requires_grad():
    t = pf.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="requires grad"):
        t.numpy()
    with pytest.raises(RuntimeError):
        np.asarray(t)
    assert t.detach().numpy().tolist() == [1.0, 1.0]


def test_np_asarray():
    t = pf.arange(4, dtype=pf.int32)
    a = np.asarray(t)
    assert a.dtype == np.int32 and a.tolist() == [0, 1, 2, 3]
    assert np.shares_memory(a, t.numpy())
    assert np.asarray(t, dtype=np.float64).dtype == np.float64


def test_item_tolist_scalars():
    assert pf.tensor(2.5).item() == 2.5 and isinstance(pf.tensor(2.5).item(), float)
    assert pf.tensor([3]).item() == 3 and isinstance(pf.tensor([3]).item(), int)
    assert pf.tensor(True).item() is True
    with pytest.raises(RuntimeError):
        pf.ones(2).item()
    assert pf.tensor([[1, 2], [3, 4]]).tolist() == [[1, 2], [3, 4]]
    assert pf.tensor(1.5).tolist() == 1.5
    assert float(pf.tensor([2.5])) == 2.5
    assert int(pf.tensor(7.9)) == 7
    assert bool(pf.tensor([1.0])) is True and bool(pf.tensor(0)) is False
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(pf.ones(2))


def test_len_and_iteration():
    t = pf.arange(6).reshape(3, 2)
    assert len(t) == 3
    rows = list(t)
    assert len(rows) == 3 and all(isinstance(r, pf.Tensor) for r in rows)
    assert [r.tolist() for r in rows] == [[0, 1], [2, 3], [4, 5]]
    assert [x.item() for x in pf.tensor([4, 5])] == [4, 5]
    with pytest.raises(TypeError):
        len(pf.tensor(1.0))
    with pytest.raises(TypeError):
        iter(pf.tensor(1.0))


def test_repr(torch):
    assert repr(pf.tensor([1.0, 2.0])) == repr(torch.tensor([1.0, 2.0]))
    assert repr(pf.tensor([1, 2])) == repr(torch.tensor([1, 2]))
    r = repr(pf.tensor([1.0, 2.0], requires_grad=True))
    assert r.startswith("tensor(") and "requires_grad=True" in r
    y = pf.tensor([1.0, 2.0], requires_grad=True) * 2
    assert re.search(r"grad_fn=<\w+>", repr(y)) and "Mul" in repr(y)
    r = repr(pf.zeros(2, dtype=pf.float64))
    assert r.startswith("tensor(") and "dtype=pipeflow.float64" in r
    assert "dtype" not in repr(pf.zeros(2)) and "dtype" not in repr(pf.tensor([True]))
    assert str(pf.tensor([1.0])).startswith("tensor(")


# =====================================================================================
# Devices
# =====================================================================================
def test_to_cpu_is_identity():
    t = pf.ones(3)
    assert t.to("cpu") is t
    assert t.to(pf.device("cpu")) is t
    assert t.cpu() is t
    assert t.to("cpu", non_blocking=True) is t
    assert t.to(device="cpu") is t
    assert t.to("cpu", pf.float32) is t


def test_to_other_tensor():
    t = pf.ones(3)
    other = pf.zeros(2, dtype=pf.float64)
    out = t.to(other)
    assert out.dtype == pf.float64 and out.device == "cpu" and out.tolist() == [1.0] * 3
    assert t.to(pf.zeros(1)) is t


def test_to_device_and_dtype():
    t = pf.ones(2)
    out = t.to("cpu", pf.int32)
    assert out.dtype == pf.int32 and out.tolist() == [1, 1]
    out = t.to(device="cpu", dtype=pf.float16, non_blocking=True)
    assert out.dtype == pf.float16


def test_to_dtype_is_differentiable():
    x = pf.tensor([1.0, 2.0, 3.0], dtype=pf.float64, requires_grad=True)
    y = x.to(pf.float32)
    assert y.requires_grad and y.grad_fn is not None
    (y * y).sum().backward()
    assert x.grad.dtype == pf.float64
    assert x.grad.tolist() == [2.0, 4.0, 6.0]


def test_float_method_is_differentiable(torch):
    x = pf.tensor([1.0, -2.0], requires_grad=True)
    x.double().mul(3).sum().backward()
    tx = torch.tensor([1.0, -2.0], requires_grad=True)
    tx.double().mul(3).sum().backward()
    assert_same(x.grad, tx.grad)


@pytest.mark.skipif(CUDA, reason="checks the error raised without CUDA")
def test_cuda_without_gpu_raises():
    t = pf.ones(2)
    with pytest.raises(RuntimeError, match="CUDA"):
        t.cuda()
    with pytest.raises(RuntimeError, match="CUDA"):
        t.to("cuda")
    with pytest.raises(RuntimeError, match="CUDA"):
        pf.zeros(2, device="cuda")


def test_pin_memory():
    t = pf.arange(6.0).reshape(2, 3)
    assert t.is_pinned() is False
    p = t.pin_memory()
    assert p.device == "cpu" and p.tolist() == t.tolist() and p.dtype == t.dtype
    assert not np.shares_memory(p.numpy(), t.numpy())
    assert p.is_pinned() is CUDA
    if not CUDA:
        assert p.is_pinned() is False


def test_device_parsing():
    d = pf.device("cuda:1")
    assert d.type == "cuda" and d.index == 1
    assert str(d) == "cuda:1" and repr(d) == "device(type='cuda', index=1)"
    assert d == "cuda:1" and d == pf.device("cuda", 1) and d != pf.device("cuda:0")
    assert pf.device("cpu") == "cpu" and pf.device("cpu").type == "cpu"
    assert pf.device("cpu").index is None
    assert pf.device(pf.device("cuda:2")) == "cuda:2"
    assert hash(pf.device("cuda:1")) == hash(pf.device("cuda", 1))
    assert len({pf.device("cpu"), pf.device("cpu")}) == 1


def test_device_matches_torch(torch):
    for spec in ["cpu", "cuda:0", "cuda:3"]:
        d, ref = pf.device(spec), torch.device(spec)
        assert (d.type, d.index) == (ref.type, ref.index)
        assert str(d) == str(ref) and repr(d) == repr(ref)


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "cuda:", "cuda:-1", "cuda:1:2", "", "CUDA",
                                  "tpu:0"])
def test_bad_device_strings(spec):
    with pytest.raises(ValueError):
        pf.device(spec)


# =====================================================================================
# DLPack
# =====================================================================================
def test_torch_from_dlpack_shares_memory(torch):
    t = pf.arange(6.0).reshape(2, 3)
    ref = torch.from_dlpack(t)
    assert tuple(ref.shape) == (2, 3) and ref.dtype == torch.float32
    ref[0, 1] = 42
    assert t[0, 1].item() == 42
    t[1, 2] = -7
    assert ref[1, 2].item() == -7


def test_pf_from_dlpack_of_torch_shares_memory(torch):
    ref = torch.arange(6, dtype=torch.int32).reshape(2, 3)
    t = pf.from_dlpack(ref)
    assert t.dtype == pf.int32 and t.shape == (2, 3) and t.device == "cpu"
    ref[1, 1] = 99
    assert t[1, 1].item() == 99
    t[0, 0] = -5
    assert ref[0, 0].item() == -5


def test_dlpack_roundtrip_non_contiguous(torch):
    ref = torch.arange(6.0).reshape(2, 3).t()
    t = pf.from_dlpack(ref)
    assert t.tolist() == ref.tolist()
    back = torch.from_dlpack(pf.arange(6.0).reshape(2, 3).T)
    assert back.tolist() == ref.tolist()


def test_from_dlpack_numpy():
    a = np.arange(4, dtype=np.float64)
    t = pf.from_dlpack(a)
    assert t.dtype == pf.float64 and t.tolist() == [0.0, 1.0, 2.0, 3.0]
    a[2] = 10
    assert t[2].item() == 10
    back = np.from_dlpack(pf.ones(2))
    assert back.tolist() == [1.0, 1.0]


def test_dlpack_refuses_requires_grad(torch):
    t = pf.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="grad"):
        torch.from_dlpack(t)
    with pytest.raises(RuntimeError, match="grad"):
        np.from_dlpack(t)
    assert torch.from_dlpack(t.detach()).tolist() == [1.0, 1.0]


# =====================================================================================
# Indexing
# =====================================================================================
INDEXES = {
    "int": lambda L, x: 1,
    "neg_int": lambda L, x: -1,
    "tuple": lambda L, x: (1, 2),
    "ints3": lambda L, x: (0, -1, 2),
    "slice": lambda L, x: slice(1, None),
    "slice_step": lambda L, x: (slice(None), slice(None, None, 2)),
    "col": lambda L, x: (slice(None), 1),
    "none": lambda L, x: (None, 0),
    "none_mid": lambda L, x: (slice(None), None, 1),
    "ellipsis": lambda L, x: (Ellipsis, 1),
    "ellipsis_none": lambda L, x: (0, Ellipsis, None),
    "bool_mask": lambda L, x: x > 10,
    "bool_mask_row": lambda L, x: L.tensor([True, False]),
    "list": lambda L, x: [1, 0, 1],
    "int_tensor": lambda L, x: L.tensor([1, 0]),
    "int_tensor_2d": lambda L, x: L.tensor([[0, 1], [1, 1]]),
    "two_lists": lambda L, x: ([0, 1], [2, 0]),
    "slice_and_list": lambda L, x: (slice(None), [2, 0]),
    "tensor_and_slice": lambda L, x: (L.tensor([1]), slice(0, 2)),
    "0d_tensor": lambda L, x: L.tensor(1),
    "mask_and_slice": lambda L, x: (slice(None), L.tensor([True, False, True])),
}


@pytest.mark.parametrize("name", list(INDEXES))
def test_getitem_matches_torch(torch, name):
    make = INDEXES[name]
    x = pf.arange(24.0).reshape(2, 3, 4)
    tx = torch.arange(24.0).reshape(2, 3, 4)
    assert_same(x[make(pf, x)], tx[make(torch, tx)])


def test_getitem_basic_is_view():
    x = pf.zeros(2, 3)
    row = x[1]
    row.fill_(4)
    assert x.tolist() == [[0.0, 0.0, 0.0], [4.0, 4.0, 4.0]]
    col = x[:, 0]
    col.add_(1)
    assert x[:, 0].tolist() == [1.0, 5.0]


def test_getitem_advanced_is_copy():
    x = pf.zeros(3)
    sel = x[[0, 1]]
    sel.fill_(9)
    assert x.tolist() == [0.0, 0.0, 0.0]


def test_getitem_out_of_range():
    with pytest.raises(IndexError):
        pf.zeros(2)[5]


SETITEMS = {
    "int_scalar": (lambda L, x: 0, lambda L: 1.5),
    "col_tensor": (lambda L, x: (slice(None), 1), lambda L: L.tensor([5.0, 6.0])),
    "mask_scalar": (lambda L, x: x > 2, lambda L: -1.0),
    "mask_tensor": (lambda L, x: x > 3, lambda L: L.tensor([10.0, 20.0])),
    "list_broadcast": (lambda L, x: [0, 1], lambda L: L.tensor([7.0, 8.0, 9.0])),
    "ellipsis": (lambda L, x: (Ellipsis, -1), lambda L: 7.5),
    "int_tensor_index": (lambda L, x: L.tensor([1]), lambda L: L.tensor(3.0)),
    "all": (lambda L, x: slice(None), lambda L: L.tensor([1.0, 2.0, 3.0])),
    "two_lists": (lambda L, x: ([0, 1], [2, 0]), lambda L: L.tensor([-3.0, -4.0])),
    "0d_tensor_value": (lambda L, x: (1, 1), lambda L: L.tensor(8.0)),
}


@pytest.mark.parametrize("name", list(SETITEMS))
def test_setitem_matches_torch(torch, name):
    make_index, make_value = SETITEMS[name]
    x = pf.arange(6.0).reshape(2, 3)
    tx = torch.arange(6.0).reshape(2, 3)
    x[make_index(pf, x)] = make_value(pf)
    tx[make_index(torch, tx)] = make_value(torch)
    assert_same(x, tx)


def test_setitem_writes_in_place():
    x = pf.zeros(2, 3)
    alias = x.detach()
    a = x.numpy()
    x[0, 1] = 3
    x[x > 2] = 4
    assert alias[0, 1].item() == 4 and a[0, 1] == 4


def test_setitem_int_tensor_float_value(torch):
    x, tx = pf.arange(4), torch.arange(4)
    x[1] = 2.7
    tx[1] = 2.7
    assert_same(x, tx)


# =====================================================================================
# In-place methods
# =====================================================================================
INPLACE = {
    "add_scalar": lambda L, t: t.add_(2),
    "add_alpha": lambda L, t: t.add_(L.ones(2, 3), alpha=2),
    "add_broadcast": lambda L, t: t.add_(L.tensor([1.0, 2.0, 3.0])),
    "sub": lambda L, t: t.sub_(L.tensor([[1.0], [2.0]])),
    "sub_alpha": lambda L, t: t.sub_(1.5, alpha=2),
    "mul": lambda L, t: t.mul_(3),
    "mul_tensor": lambda L, t: t.mul_(L.arange(3.0)),
    "div": lambda L, t: t.div_(4),
    "div_tensor": lambda L, t: t.div_(L.tensor([1.0, 2.0, 4.0])),
    "zero": lambda L, t: t.zero_(),
    "fill": lambda L, t: t.fill_(3.5),
    "fill_0d_tensor": lambda L, t: t.fill_(L.tensor(2.0)),
    "copy_broadcast": lambda L, t: t.copy_(L.tensor([9.0, 8.0, 7.0])),
    "copy_int_src": lambda L, t: t.copy_(L.arange(6).reshape(2, 3)),
    "clamp": lambda L, t: t.clamp_(1, 4),
    "clamp_min": lambda L, t: t.clamp_(min=2.5),
    "clamp_max": lambda L, t: t.clamp_(max=2.5),
    "masked_fill": lambda L, t: t.masked_fill_(t > 2, -1.0),
    "masked_fill_bcast": lambda L, t: t.masked_fill_(L.tensor([True, False, True]), 0.5),
}


@pytest.mark.parametrize("name", list(INPLACE))
def test_inplace_matches_torch_and_returns_self(torch, name):
    op = INPLACE[name]
    t = pf.arange(6.0).reshape(2, 3)
    alias = t.detach()
    view = t[1]
    storage = t.numpy()
    tt = torch.arange(6.0).reshape(2, 3)
    out = op(pf, t)
    ref = op(torch, tt)
    assert out is t
    assert ref is tt
    assert_same(t, tt)
    assert_same(alias, tt)          # a prior detach() shares the storage
    assert_same(view, tt[1])        # as does a prior view
    np.testing.assert_allclose(storage, tt.numpy())


def test_iadd_keeps_identity(torch):
    t = pf.arange(3.0)
    alias = t.detach()
    t0 = t
    t += 1
    assert t is t0 and t.tolist() == [1.0, 2.0, 3.0] and alias.tolist() == [1.0, 2.0, 3.0]
    t -= pf.ones(3)
    t *= 2
    t /= 4
    tt = torch.arange(3.0)
    tt += 1
    tt -= torch.ones(3)
    tt *= 2
    tt /= 4
    assert_same(t, tt)


def test_int_tensor_iadd_float_raises(torch):
    tt = torch.arange(3)
    with pytest.raises(RuntimeError):
        tt += 1.5
    t = pf.arange(3)
    with pytest.raises(RuntimeError):
        t += 1.5
    assert t.tolist() == [0, 1, 2]
    with pytest.raises(RuntimeError):
        t.div_(2)
    with pytest.raises(RuntimeError):
        t.add_(pf.ones(3))
    t += 2
    assert t.tolist() == [2, 3, 4] and t.dtype == pf.int64


def test_inplace_broadcast_shape_mismatch(torch):
    with pytest.raises(RuntimeError):
        torch.zeros(3).add_(torch.ones(2, 3))
    with pytest.raises(RuntimeError):
        pf.zeros(3).add_(pf.ones(2, 3))
    with pytest.raises(RuntimeError):
        pf.zeros(3).copy_(pf.ones(2))


def test_copy_converts_dtype():
    t = pf.zeros(3, dtype=pf.int32)
    t.copy_(pf.tensor([1.7, 2.2, -3.9]))
    assert t.dtype == pf.int32 and t.tolist() == [1, 2, -3]
    f = pf.zeros(2)
    f.copy_(np.array([1.0, 2.0]))
    assert f.tolist() == [1.0, 2.0]


# =====================================================================================
# Errors
# =====================================================================================
def test_add_shape_mismatch_error():
    with pytest.raises(RuntimeError) as info:
        pf.ones(2, 3) + pf.ones(4)
    msg = str(info.value)
    assert "broadcast" in msg or ("3" in msg and "4" in msg and "match" in msg), msg


def test_reshape_wrong_size_error():
    with pytest.raises(RuntimeError) as info:
        pf.ones(2, 3).reshape(4, 4)
    msg = str(info.value)
    assert "[4, 4]" in msg and "6" in msg, msg
    with pytest.raises(RuntimeError, match="6"):
        pf.ones(2, 3).view(-1, 4)


def test_matmul_shape_error():
    with pytest.raises(RuntimeError) as info:
        pf.ones(2, 3) @ pf.ones(4, 5)
    msg = str(info.value)
    assert "2x3" in msg and "4x5" in msg, msg
    with pytest.raises(RuntimeError) as info:
        pf.ones(3) @ pf.ones(4)
    assert "3" in str(info.value) and "4" in str(info.value)


def test_matmul_batch_mismatch_error():
    with pytest.raises(RuntimeError) as info:
        pf.ones(2, 3, 4) @ pf.ones(5, 4, 6)
    msg = str(info.value)
    assert ("2" in msg and "5" in msg) or "broadcast" in msg, msg
