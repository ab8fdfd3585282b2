"""pipeflow dtypes: named wrappers over NumPy dtypes, and PyTorch's promotion rules."""
import numpy as np

try:  # NumPy has no bfloat16; ml_dtypes (the one JAX uses) provides it on the CPU
    import ml_dtypes
except ImportError:  # pragma: no cover - ml_dtypes is a dependency
    ml_dtypes = None


class dtype:
    """A tensor element type, printed the PyTorch way (``pipeflow.float32``)."""

    __slots__ = ("name", "np", "is_floating_point", "itemsize")

    def __init__(self, name, np_dtype):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.is_floating_point = self.np.kind == "f" or name == "bfloat16"
        self.itemsize = self.np.itemsize

    def __repr__(self):
        return f"pipeflow.{self.name}"

    def __reduce__(self):
        return (from_numpy_dtype, (self.np,))


float16 = dtype("float16", np.float16)
float32 = dtype("float32", np.float32)
float64 = dtype("float64", np.float64)
int8 = dtype("int8", np.int8)
int16 = dtype("int16", np.int16)
int32 = dtype("int32", np.int32)
int64 = dtype("int64", np.int64)
uint8 = dtype("uint8", np.uint8)
bool_ = dtype("bool", np.bool_)
ALL = [float16, float32, float64, int8, int16, int32, int64, uint8, bool_]
if ml_dtypes is not None:
    bfloat16 = dtype("bfloat16", ml_dtypes.bfloat16)
    ALL.append(bfloat16)
    TYPE_NAMES_EXTRA = {bfloat16: "BFloat16Tensor"}
else:
    TYPE_NAMES_EXTRA = {}
ALIASES = {"half": float16, "float": float32, "double": float64,
           "short": int16, "int": int32, "long": int64}

_BY_NUMPY = {d.np: d for d in ALL}
_BY_NAME = {d.name: d for d in ALL}
_BY_NAME.update(ALIASES)
default_float = float32

# Legacy type names used by Tensor.type()
TYPE_NAMES = {float16: "HalfTensor", float32: "FloatTensor", float64: "DoubleTensor",
              int8: "CharTensor", int16: "ShortTensor", int32: "IntTensor",
              int64: "LongTensor", uint8: "ByteTensor", bool_: "BoolTensor", **TYPE_NAMES_EXTRA}


def from_numpy_dtype(np_dtype):
    try:
        return _BY_NUMPY[np.dtype(np_dtype)]
    except KeyError:
        raise TypeError(f"pipeflow has no dtype for NumPy dtype {np.dtype(np_dtype)}") from None


def to_numpy(d):
    """Any dtype spelling (pipeflow dtype, NumPy dtype, name, Python type) -> NumPy dtype."""
    if d is None:
        return None
    if d.__class__ is dtype:
        return d.np
    if isinstance(d, str):
        if d.startswith("pipeflow."):
            d = d[len("pipeflow."):]
        if d in _BY_NAME:
            return _BY_NAME[d].np
        raise TypeError(f"unknown dtype name {d!r}")
    if d is float:  # as in PyTorch, the Python types name the 64-bit dtypes
        return float64.np
    return from_numpy_dtype(d).np


def _category(np_dtype):
    kind = np_dtype.kind
    return 0 if kind == "b" else 1 if kind in "iu" else 2


def _scalar_category(value):
    return 0 if isinstance(value, (bool, np.bool_)) else 1 if isinstance(value, (int, np.integer)) else 2


def result_type(a, b):
    """PyTorch's promotion for a binary op on two arrays, or an array and a Python scalar:
    the higher category (bool < int < float) wins, a scalar of a higher category giving the
    default dtype; within a category, dimensioned arrays outrank 0-d ones."""
    if not hasattr(b, "dtype"):
        cat = _scalar_category(b)
        if cat <= _category(a.dtype):
            return a.dtype
        return np.dtype(np.int64) if cat == 1 else default_float.np
    if _category(a.dtype) == _category(b.dtype):
        if a.ndim == 0 and b.ndim > 0:
            return b.dtype
        if b.ndim == 0 and a.ndim > 0:
            return a.dtype
    return promote_types(a.dtype, b.dtype)


def promote_types(a, b):
    """PyTorch's promotion of two NumPy dtypes of operands with dimensions."""
    ca, cb = _category(a), _category(b)
    if ca != cb:
        return a if ca > cb else b
    if a == b:
        return a
    if a.kind == "V" or b.kind == "V":  # bfloat16 with float16 -> float32, else the wider
        return max(a, b, key=lambda d: (d.itemsize, d.kind != "V")) \
            if max(a.itemsize, b.itemsize) > 2 else np.dtype(np.float32)
    return np.promote_types(a, b)
