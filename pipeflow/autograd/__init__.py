"""Automatic differentiation: Function, backward/grad, grad modes, gradcheck."""
from .engine import run_backward
from .function import Function, once_differentiable
from .grad_mode import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .gradcheck import gradcheck, gradgradcheck


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _initial_grads(tensors, grad_tensors):
    from ..tensor import Tensor
    grads = []
    for t, g in zip(tensors, grad_tensors):
        if g is None:
            if t._data.size != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            g = t.new_ones(t._data.shape)
        elif not isinstance(g, Tensor):
            g = t.new_tensor(g)
        if g._data.shape != t._data.shape:
            raise RuntimeError(f"Mismatch in shape: grad_output has a shape of "
                               f"{list(g._data.shape)} and output has a shape of "
                               f"{list(t._data.shape)}.")
        grads.append(g)
    return grads


def _check_requires_grad(tensors):
    for i, t in enumerate(tensors):
        if not t._rg:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not "
                               "have a grad_fn")


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate d(tensors)/d(leaf) into every leaf's ``.grad`` (or only `inputs`')."""
    tensors = _as_list(tensors)
    grad_tensors = _as_list(grad_tensors) if grad_tensors is not None else [None] * len(tensors)
    _check_requires_grad(tensors)
    retain_graph = create_graph if retain_graph is None else retain_graph
    grads = _initial_grads(tensors, grad_tensors)
    if inputs is None:
        run_backward(tensors, grads, retain_graph, create_graph)
        return
    inputs = _as_list(inputs)
    results = run_backward(tensors, grads, retain_graph, create_graph, inputs, allow_unused=True)
    for t, g in zip(inputs, results):
        if g is not None:
            t.grad = (g if create_graph else g.detach()) if t.grad is None else t.grad + g


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=None, materialize_grads=False):
    """The gradients of `outputs` with respect to `inputs`, returned (``.grad`` untouched)."""
    outputs, inputs = _as_list(outputs), _as_list(inputs)
    grad_outputs = _as_list(grad_outputs) if grad_outputs is not None else [None] * len(outputs)
    _check_requires_grad(outputs)
    retain_graph = create_graph if retain_graph is None else retain_graph
    grads = _initial_grads(outputs, grad_outputs)
    allow_unused = materialize_grads if allow_unused is None else allow_unused
    results = run_backward(outputs, grads, retain_graph, create_graph, inputs, allow_unused)
    if materialize_grads:
        results = tuple(r if r is not None else t.new_zeros(t._data.shape)
                        for r, t in zip(results, inputs))
    return results


def Variable(data, requires_grad=False, volatile=False):
    """Old PyTorch code's wrapper: returns a Tensor."""
    from ..tensor import Tensor
    t = data.detach() if isinstance(data, Tensor) else Tensor(data)
    if requires_grad:
        t.requires_grad = True
    return t


__all__ = ["Function", "Variable", "backward", "grad", "gradcheck", "gradgradcheck", "no_grad",
           "enable_grad", "set_grad_enabled", "inference_mode", "is_grad_enabled",
           "once_differentiable"]
