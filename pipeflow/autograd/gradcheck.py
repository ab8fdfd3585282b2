"""Numerical gradient checks: analytic (backward) against central differences, in float64."""
import numpy as np


class GradcheckError(RuntimeError):
    pass


def _tensors(inputs):
    from ..tensor import Tensor
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    return inputs, [t for t in inputs if isinstance(t, Tensor) and t._rg]


def _flat_outputs(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True):
    """Compare every output's vector-Jacobian products with central differences for every
    input that requires grad. Inputs must be float64 for the check to mean anything."""
    from . import grad
    inputs, wrt = _tensors(inputs)
    for t in wrt:
        if t._data.dtype != np.float64:
            raise GradcheckError(f"gradcheck needs float64 inputs, got {t.dtype}")
    # Every float output counts: one that does not require grad has a zero analytic
    # Jacobian, which is only right if the numerical one is zero too.
    all_outputs = _flat_outputs(fn(*inputs))
    positions = [i for i, o in enumerate(all_outputs) if o._data.dtype.kind == "f"]
    outputs = [all_outputs[i] for i in positions]
    numeric = [[np.zeros((o._data.size, t._data.size)) for t in wrt] for o in outputs]
    for j, t in enumerate(wrt):  # (with grad on: fn may itself differentiate, gradgradcheck)
        flat = t._data.reshape(-1)  # a view: perturb the input in place
        for i in range(flat.size):
            orig = flat[i]
            flat[i] = orig + eps
            plus = [_to_numpy(o) for o in _flat_outputs(fn(*inputs))]  # copies: outputs
            flat[i] = orig - eps                                        # may be views
            minus = [_to_numpy(o) for o in _flat_outputs(fn(*inputs))]
            flat[i] = orig
            for k, pos in enumerate(positions):
                diff = (plus[pos] - minus[pos]) / (2 * eps)
                numeric[k][j][:, i] = diff.reshape(-1)
    for k, out in enumerate(outputs):
        for r in range(out._data.size):
            seed = out.new_zeros(out._data.shape)
            seed._data.reshape(-1)[r] = 1.0
            analytic = grad(out, wrt, seed, retain_graph=True, allow_unused=True) if out._rg \
                else [None] * len(wrt)
            for j, (t, g) in enumerate(zip(wrt, analytic)):
                a = np.zeros(t._data.size) if g is None else _to_numpy(g).reshape(-1)
                n = numeric[k][j][r]
                if not np.allclose(a, n, rtol=rtol, atol=atol):
                    if not raise_exception:
                        return False
                    raise GradcheckError(
                        f"Jacobian mismatch for output {k} with respect to input {j}, row {r}:\n"
                        f"numerical: {n}\nanalytical: {a}")
    return True


def _to_numpy(t):
    d = t._data
    return np.array(d if isinstance(d, np.ndarray) else d.get(), dtype=np.float64)


def gradgradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, seed=0):
    """gradcheck of the function x -> d(sum(fn(x) * v))/dx with create_graph=True: checks
    that backward is itself differentiable (double backward)."""
    from . import grad
    inputs, wrt = _tensors(inputs)
    rng = np.random.default_rng(seed)
    outs = [o for o in _flat_outputs(fn(*inputs)) if o._rg]
    vs = [o.new_tensor(rng.standard_normal(o._data.shape)) for o in outs]

    def first_grads(*args):
        _, w = _tensors(args)
        outs = [o for o in _flat_outputs(fn(*args)) if o._rg]
        gs = grad(outs, w, vs, create_graph=True, allow_unused=True, materialize_grads=True)
        return tuple(gs)
    return gradcheck(first_grads, inputs, eps, atol, rtol, raise_exception)
