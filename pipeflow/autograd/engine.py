"""The backward engine: runs the graph's nodes in dependency order, summing gradients."""
import sys
import weakref

from .function import Node, RemovableHandle
from .grad_mode import state


class AccumulateGrad(Node):
    """The node of a leaf tensor: adds the incoming gradient into ``leaf.grad``."""

    def __init__(self, leaf):
        self.variable = leaf

    def name(self):
        return "AccumulateGrad"

    def accumulate(self, slot):
        """Add the gradient in `slot` (the engine's one-item buffer, handed over so that
        no reference to the gradient is left behind) into ``leaf.grad``."""
        grad, leaf = slot.pop(), self.variable
        if leaf._hooks:
            grad = _apply_hooks(leaf._hooks, grad)
        if grad._data.shape != leaf._data.shape:
            raise RuntimeError(f"gradient of shape {list(grad.shape)} does not match the leaf "
                               f"tensor's shape {list(leaf.shape)}")
        if grad._data.dtype != leaf._data.dtype:
            grad = grad.to(leaf.dtype)
        if state.enabled:  # create_graph: the gradient keeps its own graph
            leaf.grad = grad if leaf.grad is None else leaf.grad + grad
        elif leaf.grad is None:
            # Keep the gradient itself only when nothing else can see its memory (as PyTorch
            # does): .grad is updated in place later, and must alias no other tensor.
            owned = (sys.getrefcount(grad) <= 2 and sys.getrefcount(grad._data) <= 2
                     and grad._data.base is None and grad._data.flags.c_contiguous
                     and grad._data.flags.writeable and not grad._rg)
            leaf.grad = grad if owned else grad.__class__._wrap(grad._data.copy())
        elif leaf.grad._rg or not leaf.grad._data.flags.writeable:
            leaf.grad = leaf.grad + grad
        else:
            leaf.grad._data += grad._data


def accumulator_of(leaf):
    """The leaf's AccumulateGrad, shared by every graph that uses it (held weakly)."""
    node = leaf._accum_ref() if leaf._accum_ref is not None else None
    if node is None:
        node = AccumulateGrad(leaf)
        leaf._accum_ref = weakref.ref(node)
    return node




def register_hook(tensor, fn):
    if tensor.grad_fn is None:
        if tensor._hooks is None:
            tensor._hooks = []
        tensor._hooks.append(fn)
        return RemovableHandle(tensor._hooks, fn)
    return tensor.grad_fn.add_pre_hook(tensor._output_nr, fn)


def _graph(roots):
    """Number of incoming edges of every node reachable from `roots`."""
    deps, stack, root_set = {}, list(roots), set(roots)
    while stack:
        for child, _ in stack.pop().next_functions:
            if child is None:
                continue
            if child in deps:
                deps[child] += 1
            else:
                deps[child] = 1
                if child not in root_set:  # a root is walked from already
                    stack.append(child)
    return deps


def _needed(roots, deps, targets):
    """Nodes from which some target is reachable: the only ones autograd.grad must run."""
    deps, order, ready = dict(deps), [], [n for n in roots if n not in deps]
    while ready:  # a topological order, parents before children
        node = ready.pop()
        order.append(node)
        for child, _ in node.next_functions:
            if child is not None:
                deps[child] -= 1
                if not deps[child]:
                    ready.append(child)
    needed = set(targets)
    for node in reversed(order):
        if any(c in needed for c, _ in node.next_functions):
            needed.add(node)
    return needed


def run_backward(tensors, grads, retain_graph, create_graph, inputs=None, allow_unused=False):
    """Back-propagate `grads` from `tensors`. Without `inputs`, leaves' ``.grad`` are
    accumulated; with `inputs`, their gradients are returned instead (autograd.grad)."""
    buffers = {}
    for t, g in zip(tensors, grads):
        node, nr = t._grad_edge()
        buf = buffers.setdefault(node, [None] * node._n_outputs)
        buf[nr] = g if buf[nr] is None else buf[nr] + g
    roots = list(buffers)
    deps = _graph(roots)
    captures = None
    if inputs is not None:
        captures = {}
        for i, t in enumerate(inputs):
            if not t._rg:
                raise RuntimeError(f"input {i} of autograd.grad does not require grad")
            captures.setdefault(t._grad_edge(), []).append(i)
        needed = _needed(roots, deps, {node for node, _ in captures})
        results = [None] * len(inputs)

    ready = [n for n in roots if n not in deps]
    prev, state.enabled = state.enabled, create_graph
    try:
        while ready:
            node = ready.pop()
            grads_out = buffers.pop(node, None)
            if grads_out is not None and node._pre_hooks:
                _run_pre_hooks(node, grads_out)
            if captures is not None:
                for nr in range(node._n_outputs):
                    for i in captures.get((node, nr), ()):
                        results[i] = grads_out[nr] if grads_out is not None else None
                if node not in needed or node.__class__ is AccumulateGrad:
                    continue
            if node.__class__ is AccumulateGrad:
                if grads_out is not None:
                    node.accumulate(grads_out)
                continue
            if grads_out is None:  # nothing reached this node: its inputs get nothing either
                grads_in = None
            elif node._n_outputs == 1:
                grads_in = node.backward(node, grads_out[0])
                if grads_in.__class__ is not tuple or len(grads_in) != len(node.next_functions):
                    grads_in = _checked(node, grads_in)
            else:
                grads_in = _call_multi_output(node, grads_out)
            if node._saved and not retain_graph:
                node._saved = None
            for (child, nr), g in zip(node.next_functions, grads_in or _nones(node)):
                if child is None:
                    continue
                if g is not None:
                    buf = buffers.get(child)
                    if buf is None:
                        buf = buffers[child] = [None] * child._n_outputs
                    buf[nr] = g if buf[nr] is None else buf[nr] + g
                left = deps[child] - 1
                deps[child] = left
                if not left:
                    ready.append(child)
            grads_out = grads_in = g = None  # AccumulateGrad keeps unshared gradients uncopied
    finally:
        state.enabled = prev
    if captures is not None:
        for i, r in enumerate(results):
            if r is None and not allow_unused:
                raise RuntimeError(f"input {i} of autograd.grad was not used in the graph; "
                                   "pass allow_unused=True if this is intended")
        return tuple(results)


def _nones(node):
    return (None,) * len(node.next_functions)


def _run_pre_hooks(node, grads_out):
    for nr, hooks in node._pre_hooks.items():
        if grads_out[nr] is not None:
            grads_out[nr] = _apply_hooks(hooks, grads_out[nr])


def _apply_hooks(hooks, grad):
    """Each hook sees the gradient and may return a replacement; retain_grad's runs last."""
    for hook in sorted(hooks, key=lambda h: getattr(h, "runs_last", False)):
        new = hook(grad)
        grad = grad if new is None else new
    return grad


def _call_multi_output(node, grads_out):
    if node._materialize and any(g is None for g in grads_out):
        ref = next(g for g in grads_out if g is not None)  # zeros go to the same device
        grads_out = [g if g is not None else ref.new_zeros(shape, dtype=dtype)
                     for g, (shape, dtype) in zip(grads_out, node._out_meta)]
    return _checked(node, node.backward(node, *grads_out))


def _checked(node, grads_in):
    """backward's result as a tuple of one gradient per input (extra Nones allowed)."""
    if not isinstance(grads_in, tuple):
        grads_in = (grads_in,)
    n_in = len(node.next_functions)
    if len(grads_in) != n_in and (len(grads_in) < n_in or
                                  any(g is not None for g in grads_in[n_in:])):
        raise RuntimeError(f"function {node.name()} returned an incorrect number of gradients "
                           f"(expected {n_in}, got {len(grads_in)})")
    return grads_in
