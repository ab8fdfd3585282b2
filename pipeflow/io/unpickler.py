"""A restricted unpickler: it reads data, never runs code from the file.

Python's ``pickle.load`` calls whatever callable a pickle names; this one, written from
scratch like torch's ``weights_only`` unpickler (which it follows), understands only the
opcodes that build data (numbers, strings, bytes, tuples, lists, dicts, sets) and resolves
each global through an allow-list (``torch_compat.ALLOWED_GLOBALS`` by default):

* a GLOBAL / STACK_GLOBAL naming anything else raises ``ForbiddenGlobalError`` naming it, and
  globals from ``sys``, ``os``, ``posix`` and ``nt`` are refused whatever the list says;
* REDUCE and NEWOBJ call only callables of the allow-list;
* BUILD sets state only on OrderedDict / Counter (the ``_metadata`` of a state dict);
* APPEND(S) only extend lists, SETITEM(S) only fill dicts, ADDITEMS only fill sets;
* opcodes that reach Python's extension registry (EXT1/2/4), build instances of named classes
  (INST, OBJ, NEWOBJ_EX) or take out-of-band buffers are refused, and so are protocol 0's
  text opcodes.

Persistent ids (how torch refers to storages) go to a ``persistent_load`` callback.
"""
import _compat_pickle
import mmap
import pickle
import struct
from collections import Counter, OrderedDict

from .errors import CheckpointError, ForbiddenGlobalError
from . import torch_compat

BLOCKED_MODULES = ("sys", "os", "posix", "nt")
_CUT_SHORT = "malformed pickle: the data ends {} (the file is truncated or corrupt)"


def _op(code):
    return code[0]


class AllowList:
    """The globals a pickle may name: ``{'module.name': object}``; `unsupported` maps names
    that are safe but unusable to the reason they fail."""

    def __init__(self, allowed, unsupported=None):
        self.allowed = dict(allowed)
        self.unsupported = dict(unsupported or {})
        self.callable_ids = {id(v) for v in self.allowed.values() if callable(v)}

    def find_global(self, module, name):
        if type(module) is not str or type(name) is not str:
            raise CheckpointError("malformed pickle: a global's module and name must be strings")
        if (module, name) in _compat_pickle.NAME_MAPPING:  # Python 2 spellings
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        full = f"{module}.{name}"
        if module.split(".")[0] in BLOCKED_MODULES:
            raise ForbiddenGlobalError(
                f"refusing to load: the pickle names the global '{full}' from the blocked "
                f"module '{module}'; pipeflow never runs code from a checkpoint", full)
        if full in self.allowed:
            return self.allowed[full]
        if full in self.unsupported:
            raise CheckpointError(f"cannot load: the checkpoint uses '{full}' "
                                  f"({self.unsupported[full]})")
        raise ForbiddenGlobalError(
            f"refusing to load: the pickle names the global '{full}', which is not allowed "
            "(checkpoints may hold only tensors, parameters, containers and plain values; "
            "pipeflow never runs code from a checkpoint)", full)

    def check_callable(self, func, opcode):
        if id(func) not in self.callable_ids:
            raise ForbiddenGlobalError(
                f"refusing to load: the pickle asks {opcode} to call {_describe(func)}, which "
                "is not an allowed callable", _describe(func))


TORCH_ALLOWLIST = AllowList(torch_compat.ALLOWED_GLOBALS, torch_compat.UNSUPPORTED_GLOBALS)


def _describe(obj):
    try:
        text = repr(obj) if type(obj) in (str, bytes, int, float, bool, type(None)) \
            else f"an object of type {type(obj).__name__}"
    except Exception:  # pragma: no cover - repr of plain values doesn't fail
        text = "an object"
    return text[:80]


class _Mark:
    """Stands for a MARK on the stack; never a value."""


class RestrictedUnpickler:
    """``RestrictedUnpickler(data, persistent_load=fn).load()`` -> the object pickled in `data`
    (bytes or an mmap, used without a copy) from byte `start` on; after ``load()``, ``pos`` is
    the offset just past its STOP (torch's legacy files are several pickles in a row).
    `persistent_load(pid)` gets each persistent id; without one, persistent ids are refused.
    `encoding` decodes Python 2 ``str`` (SHORT_BINSTRING / BINSTRING), as torch.load does;
    text that doesn't decode is kept as bytes."""

    def __init__(self, data, persistent_load=None, allowlist=TORCH_ALLOWLIST, encoding="utf-8",
                 start=0):
        self.data = data if isinstance(data, (bytes, mmap.mmap)) else bytes(data)
        self.start = self.pos = start
        self.persistent_load = persistent_load
        self.allowlist = allowlist
        self.encoding = encoding

    # --- reading the byte stream -----------------------------------------------------------
    def _read(self, n):
        start, end = self.pos, self.pos + n
        if n < 0 or end > len(self.data):
            raise CheckpointError(_CUT_SHORT.format("in the middle of a record"))
        self.pos = end
        return self.data[start:end]

    def _unpack(self, fmt):
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self._read(size))[0]

    def _readline(self):
        end = self.data.find(b"\n", self.pos)
        if end < 0:
            raise CheckpointError(_CUT_SHORT.format("in the middle of a record"))
        line, self.pos = self.data[self.pos:end], end + 1
        return line

    # --- the stack ---------------------------------------------------------------------------
    def _pop(self):
        if not self.stack or self.stack[-1] is _Mark:
            raise CheckpointError("malformed pickle: stack underflow")
        return self.stack.pop()

    def _top(self):
        if not self.stack or self.stack[-1] is _Mark:
            raise CheckpointError("malformed pickle: stack underflow")
        return self.stack[-1]

    def _pop_any(self):
        """POP: the top item, or a MARK with nothing after it (as Python's pickle does)."""
        if self.stack and self.stack[-1] is _Mark:
            self.stack.pop()
        else:
            self._pop()

    def _pop_mark(self):
        """The items pushed since the last MARK (which goes)."""
        stack = self.stack
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is _Mark:
                items = stack[i + 1:]
                del stack[i:]
                return items
        raise CheckpointError("malformed pickle: no MARK on the stack")

    def _memo_get(self, index):
        try:
            return self.memo[index]
        except KeyError:
            raise CheckpointError(f"malformed pickle: memo entry {index} was never set") from None

    def _memo_put(self, index):
        self.memo[index] = self._top()

    # --- the loop ------------------------------------------------------------------------------
    def load(self):
        self.stack, self.memo, self.pos = [], {}, self.start
        handlers = self._handlers()
        data = self.data
        while True:
            if self.pos >= len(data):
                raise CheckpointError(_CUT_SHORT.format("before STOP"))
            code = data[self.pos]
            self.pos += 1
            if code == _op(pickle.STOP):
                result = self._pop()
                return result
            handler = handlers.get(code)
            if handler is None:
                raise CheckpointError(f"malformed or unsafe pickle: opcode {bytes([code])!r} "
                                      f"at byte {self.pos - 1} is not supported")
            handler()

    def _handlers(self):
        h = {}
        P = pickle

        def push(value):
            self.stack.append(value)

        h[_op(P.PROTO)] = lambda: self._read(1)
        h[_op(P.FRAME)] = lambda: self._read(8)
        h[_op(P.MARK)] = lambda: push(_Mark)
        h[_op(P.POP)] = self._pop_any
        h[_op(P.POP_MARK)] = self._pop_mark
        h[_op(P.DUP)] = lambda: push(self._top())
        # constants and numbers
        h[_op(P.NONE)] = lambda: push(None)
        h[_op(P.NEWTRUE)] = lambda: push(True)
        h[_op(P.NEWFALSE)] = lambda: push(False)
        h[_op(P.BININT)] = lambda: push(self._unpack("<i"))
        h[_op(P.BININT1)] = lambda: push(self._read(1)[0])
        h[_op(P.BININT2)] = lambda: push(self._unpack("<H"))
        h[_op(P.LONG1)] = lambda: push(pickle.decode_long(self._read(self._read(1)[0])))
        h[_op(P.LONG4)] = self._long4
        h[_op(P.BINFLOAT)] = lambda: push(self._unpack(">d"))
        # strings and bytes
        h[_op(P.BINUNICODE)] = lambda: push(self._text(self._unpack("<I")))
        h[_op(P.SHORT_BINUNICODE)] = lambda: push(self._text(self._read(1)[0]))
        h[_op(P.BINUNICODE8)] = lambda: push(self._text(self._unpack("<Q")))
        h[_op(P.BINBYTES)] = lambda: push(self._read(self._unpack("<I")))
        h[_op(P.SHORT_BINBYTES)] = lambda: push(self._read(self._read(1)[0]))
        h[_op(P.BINBYTES8)] = lambda: push(self._read(self._unpack("<Q")))
        h[_op(P.BYTEARRAY8)] = lambda: push(bytearray(self._read(self._unpack("<Q"))))
        h[_op(P.SHORT_BINSTRING)] = lambda: push(self._py2str(self._read(self._read(1)[0])))
        h[_op(P.BINSTRING)] = self._binstring
        # containers
        h[_op(P.EMPTY_TUPLE)] = lambda: push(())
        h[_op(P.TUPLE)] = lambda: push(tuple(self._pop_mark()))
        h[_op(P.TUPLE1)] = lambda: push((self._pop(),))
        h[_op(P.TUPLE2)] = self._tuple2
        h[_op(P.TUPLE3)] = self._tuple3
        h[_op(P.EMPTY_LIST)] = lambda: push([])
        h[_op(P.LIST)] = lambda: push(self._pop_mark())
        h[_op(P.APPEND)] = self._append
        h[_op(P.APPENDS)] = self._appends
        h[_op(P.EMPTY_DICT)] = lambda: push({})
        h[_op(P.DICT)] = self._dict
        h[_op(P.SETITEM)] = self._setitem
        h[_op(P.SETITEMS)] = self._setitems
        h[_op(P.EMPTY_SET)] = lambda: push(set())
        h[_op(P.ADDITEMS)] = self._additems
        h[_op(P.FROZENSET)] = lambda: push(frozenset(self._pop_mark()))
        # memo
        h[_op(P.BINGET)] = lambda: push(self._memo_get(self._read(1)[0]))
        h[_op(P.LONG_BINGET)] = lambda: push(self._memo_get(self._unpack("<I")))
        h[_op(P.BINPUT)] = lambda: self._memo_put(self._read(1)[0])
        h[_op(P.LONG_BINPUT)] = lambda: self._memo_put(self._unpack("<I"))
        h[_op(P.MEMOIZE)] = lambda: self._memo_put(len(self.memo))
        # the risky ones, each checked
        h[_op(P.GLOBAL)] = self._global
        h[_op(P.STACK_GLOBAL)] = self._stack_global
        h[_op(P.REDUCE)] = self._reduce
        h[_op(P.NEWOBJ)] = self._newobj
        h[_op(P.BUILD)] = self._build
        h[_op(P.BINPERSID)] = self._binpersid
        return h

    def _text(self, n):
        raw = self._read(n)
        try:
            return raw.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise CheckpointError("malformed pickle: a string is not valid UTF-8") from None

    def _py2str(self, raw):
        if self.encoding == "bytes":
            return raw
        try:
            return raw.decode(self.encoding)
        except UnicodeDecodeError:
            return raw

    def _binstring(self):
        n = self._unpack("<i")
        if n < 0:
            raise CheckpointError("malformed pickle: negative string length")
        self.stack.append(self._py2str(self._read(n)))

    def _long4(self):
        n = self._unpack("<i")
        if n < 0:
            raise CheckpointError("malformed pickle: negative integer length")
        self.stack.append(pickle.decode_long(self._read(n)))

    def _tuple2(self):
        b = self._pop()
        a = self._pop()
        self.stack.append((a, b))

    def _tuple3(self):
        c = self._pop()
        b = self._pop()
        a = self._pop()
        self.stack.append((a, b, c))

    def _target(self, kinds, opcode):
        target = self._top()
        if type(target) not in kinds:
            raise CheckpointError(f"malformed pickle: {opcode} on a {type(target).__name__}")
        return target

    def _append(self):
        item = self._pop()
        self._target((list,), "APPEND").append(item)

    def _appends(self):
        items = self._pop_mark()
        self._target((list,), "APPENDS").extend(items)

    def _fill(self, target, items):
        if len(items) % 2:
            raise CheckpointError("malformed pickle: odd number of items for a dict")
        try:
            for i in range(0, len(items), 2):
                target[items[i]] = items[i + 1]
        except TypeError as e:  # an unhashable key
            raise CheckpointError(f"malformed pickle: {e}") from None

    def _dict(self):
        d = {}
        self._fill(d, self._pop_mark())
        self.stack.append(d)

    def _setitem(self):
        value = self._pop()
        key = self._pop()
        self._fill(self._target((dict, OrderedDict, Counter), "SETITEM"), [key, value])

    def _setitems(self):
        items = self._pop_mark()
        self._fill(self._target((dict, OrderedDict, Counter), "SETITEMS"), items)

    def _additems(self):
        items = self._pop_mark()
        try:
            self._target((set,), "ADDITEMS").update(items)
        except TypeError as e:
            raise CheckpointError(f"malformed pickle: {e}") from None

    def _global(self):
        module = self._readline().decode("utf-8", "replace")
        name = self._readline().decode("utf-8", "replace")
        self.stack.append(self.allowlist.find_global(module, name))

    def _stack_global(self):
        name = self._pop()
        module = self._pop()
        self.stack.append(self.allowlist.find_global(module, name))

    def _call(self, func, args, opcode):
        self.allowlist.check_callable(func, opcode)
        if type(args) is not tuple:
            raise CheckpointError(f"malformed pickle: {opcode} arguments are not a tuple")
        return func(*args)

    def _reduce(self):
        args = self._pop()
        func = self._top()
        self.stack[-1] = self._call(func, args, "REDUCE")

    def _newobj(self):
        args = self._pop()
        cls = self._top()
        self.stack[-1] = self._call(cls, args, "NEWOBJ")

    def _build(self):
        state = self._pop()
        inst = self._top()
        if type(inst) not in (OrderedDict, Counter):
            raise CheckpointError(f"malformed or unsafe pickle: BUILD on a "
                                  f"{type(inst).__name__} (only OrderedDict state is allowed)")
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = state[0]
        if state is None:
            return
        if type(state) is not dict or any(type(k) is not str for k in state):
            raise CheckpointError("malformed pickle: BUILD state is not a dict of attributes")
        inst.__dict__.update(state)

    def _binpersid(self):
        pid = self._pop()
        if self.persistent_load is None:
            raise CheckpointError("malformed pickle: a persistent id where none is expected")
        self.stack.append(self.persistent_load(pid))
