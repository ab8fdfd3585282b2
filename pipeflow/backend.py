"""Devices and array modules: "cpu" runs on NumPy, "cuda[:N]" on CuPy.

Everything device-specific lives here: which array module a device uses, transfers
between devices, and pinned host memory for fast host-to-device copies."""
import threading

import numpy as np

try:
    import cupy
except ImportError:  # CPU-only install
    cupy = None


def cuda_available():
    if cupy is None:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # driver missing or no device
        return False


def device_count():
    return cupy.cuda.runtime.getDeviceCount() if cuda_available() else 0


class device:
    """A device like ``torch.device``: ``device("cuda:1")``, ``device("cuda", 1)``, ``device("cpu")``."""

    __slots__ = ("type", "index")

    def __init__(self, spec, index=None):
        if isinstance(spec, device):
            spec, index = spec.type, spec.index
        elif isinstance(spec, int):
            spec, index = "cuda", spec
        kind, colon, num = str(spec).partition(":")
        if kind not in ("cpu", "cuda") or (colon and not num.isdigit()) or \
                (index is not None and (not isinstance(index, int) or index < 0)):
            raise ValueError(f"unknown device {spec!r}: expected 'cpu', 'cuda' or 'cuda:N' "
                             "with N >= 0")
        if num:
            index = int(num)
        if kind == "cuda" and index is None:
            index = cupy.cuda.runtime.getDevice() if cuda_available() else 0
        self.type, self.index = kind, (index if kind == "cuda" else None)

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        return f"device(type='{self.type}'" + ("" if self.index is None else f", index={self.index}") + ")"

    def __eq__(self, other):
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))


CPU = device("cpu")


def require_cuda(what):
    if not cuda_available():
        raise RuntimeError(f"{what} needs CUDA, but "
                           + ("CuPy is not installed (pip install 'pipeflow[cuda12]')" if cupy is None
                              else "no NVIDIA GPU is visible to CuPy"))


def device_of(array):
    if isinstance(array, np.ndarray):
        return CPU
    return device("cuda", array.device.id)


def module_for(dev):
    """The array module (numpy or cupy) of a device."""
    if dev.type == "cpu":
        return np
    require_cuda(f"device {dev}")
    return cupy


def array_module(array):
    return np if isinstance(array, np.ndarray) else cupy


def to_device(array, dev, non_blocking=False):
    """Copy `array` to device `dev` (no copy when it is there already). A host-to-device
    copy is enqueued on the current stream: non-blocking, it returns at once (and only
    overlaps with host work when the source lives in pinned memory); else it waits for
    the copy, as torch does."""
    src = device_of(array)
    if src == dev:
        return array
    if dev.type == "cpu":
        return array.get()
    require_cuda(f"moving a tensor to {dev}")
    with cupy.cuda.Device(dev.index):
        if src.type == "cuda":
            return cupy.copy(array)  # a copy on the current (target) device, peer to peer
        out = cupy.empty(array.shape, array.dtype)
        stream = cupy.cuda.get_current_stream()
        out.set(array, stream=stream)  # CuPy makes the source contiguous (0-d stays 0-d)
        if non_blocking:
            _keep_until_copied(array, stream)
        else:
            stream.synchronize()
            release_copied()
        return out


_in_flight = []  # (event, host array) of non-blocking copies not yet known to be done
_in_flight_lock = threading.Lock()


def _keep_until_copied(array, stream):
    """Hold the source of a non-blocking copy until the copy has read it: dropped at once,
    pinned memory would be handed on (a loader slot to its worker, a block of CuPy's
    pinned pool to the next batch) and overwritten under the copy."""
    event = blocking_event()
    event.record(stream)
    release_copied()
    with _in_flight_lock:
        _in_flight.append((event, array))


def release_copied():
    """Let go of the sources of the non-blocking copies that have finished (called by
    every copy, by blocking ones after their wait, and by synchronize)."""
    with _in_flight_lock:
        done, pending = [], []
        for entry in _in_flight:
            (done if entry[0].done else pending).append(entry)
        _in_flight[:] = pending
    del done  # outside the lock: dropping a batch runs finalizers, which may copy again


def blocking_event():
    """A CUDA event whose synchronize() sleeps instead of spinning a CPU core that the
    loader's workers need."""
    return cupy.cuda.Event(block=True, disable_timing=True)


def pinned_empty(shape, np_dtype):
    """A NumPy array in page-locked host memory (plain memory when there is no GPU)."""
    np_dtype = np.dtype(np_dtype)
    if not cuda_available():
        return np.empty(shape, np_dtype)
    count = int(np.prod(shape, dtype=np.int64))
    mem = cupy.cuda.alloc_pinned_memory(max(count * np_dtype.itemsize, 1))
    return np.frombuffer(mem, np_dtype, count).reshape(shape)


def register_host_memory(ptr, size, device_index):
    """Page-lock existing host memory (cudaHostRegister) for copies to `device_index`, so
    that they need no staging buffer and can run asynchronously."""
    require_cuda("pinning host memory")
    with cupy.cuda.Device(device_index):
        cupy.cuda.runtime.hostRegister(ptr, size, 0)


def unregister_host_memory(ptr, device_index):
    """Unpin memory once `device_index` has finished every copy queued from it (CUDA does
    not promise that unregistering waits for them)."""
    with cupy.cuda.Device(device_index):
        cupy.cuda.runtime.deviceSynchronize()
        cupy.cuda.runtime.hostUnregister(ptr)  # in the context that registered it


def is_pinned(array):
    if not cuda_available() or not isinstance(array, np.ndarray):
        return False
    ptr = array.__array_interface__["data"][0]
    try:
        attrs = cupy.cuda.runtime.pointerGetAttributes(ptr)
    except Exception:
        return False
    return attrs.type == cupy.cuda.runtime.memoryTypeHost
