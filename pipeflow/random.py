"""Random number generation: a Generator per device, and the default ones behind
``pf.manual_seed``. CPU streams are NumPy's PCG64; CUDA streams are CuPy's."""
import numpy as np

from . import backend


class Generator:
    """A local random stream: ``g = pf.Generator().manual_seed(0); pf.randn(3, generator=g)``."""

    def __init__(self, device="cpu"):
        self.device = backend.device(device)
        self.manual_seed(np.random.SeedSequence().entropy % (2 ** 63))

    def manual_seed(self, seed):
        self._seed = int(seed)
        if self.device.type == "cpu":
            self._rng = np.random.Generator(np.random.PCG64(self._seed))
        else:
            backend.require_cuda("a CUDA generator")
            with backend.cupy.cuda.Device(self.device.index):
                self._rng = backend.cupy.random.RandomState(self._seed)
        return self

    def seed(self):
        seed = int(np.random.SeedSequence().entropy % (2 ** 63))
        self.manual_seed(seed)
        return seed

    def initial_seed(self):
        return self._seed

    def get_state(self):
        if self.device.type != "cpu":
            raise NotImplementedError("get_state is only supported for CPU generators")
        return self._rng.bit_generator.state

    def set_state(self, state):
        self._rng.bit_generator.state = state
        return self

    # Arrays drawn from this stream (used by the factories)
    def uniform(self, shape, np_dtype, low=0.0, high=1.0):
        if self.device.type == "cpu":
            out = self._rng.random(shape, dtype=np.float64 if np_dtype.itemsize > 4 else np.float32)
            return (out * (high - low) + low).astype(np_dtype, copy=False)
        return self._rng.uniform(low, high, shape).astype(np_dtype)

    def normal(self, shape, np_dtype, mean=0.0, std=1.0):
        if self.device.type == "cpu":
            out = self._rng.standard_normal(shape, dtype=np.float64 if np_dtype.itemsize > 4
                                            else np.float32)
            return (out * std + mean).astype(np_dtype, copy=False)
        return self._rng.normal(mean, std, shape).astype(np_dtype)

    def integers(self, low, high, shape, np_dtype):
        if self.device.type == "cpu":
            return self._rng.integers(low, high, shape, dtype=np.int64).astype(np_dtype, copy=False)
        return self._rng.randint(low, high, shape, dtype=np.int64).astype(np_dtype)

    def permutation(self, n):
        return self._rng.permutation(n)


default_generator = Generator("cpu")
_cuda_generators = {}


def generator_for(dev, generator=None):
    if generator is not None:
        if generator.device != dev:
            raise RuntimeError(f"expected a generator on {dev}, got one on {generator.device}")
        return generator
    if dev.type == "cpu":
        return default_generator
    if dev.index not in _cuda_generators:
        _cuda_generators[dev.index] = Generator(dev).manual_seed(default_generator.initial_seed())
    return _cuda_generators[dev.index]


def manual_seed(seed):
    """Seed every backend's default stream (CPU and every CUDA device)."""
    default_generator.manual_seed(seed)
    for index in range(backend.device_count()):
        generator_for(backend.device("cuda", index)).manual_seed(seed)
    return default_generator


def seed():
    s = default_generator.seed()
    manual_seed(s)
    return s


def initial_seed():
    return default_generator.initial_seed()


def get_rng_state():
    return default_generator.get_state()


def set_rng_state(state):
    default_generator.set_state(state)


def uniform_like(t, low, high, generator=None):
    from .tensor import Tensor
    return Tensor._wrap(generator_for(t.device, generator).uniform(t._data.shape, t._data.dtype,
                                                                   low, high))


def normal_like(t, mean, std, generator=None):
    from .tensor import Tensor
    return Tensor._wrap(generator_for(t.device, generator).normal(t._data.shape, t._data.dtype,
                                                                  mean, std))
