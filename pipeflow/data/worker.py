"""What runs in a loader's worker process, and the per-sample context datasets can read.

A worker receives tasks (batch id, sample indices, ring slot) over its pipe, fetches the
samples, collates them straight into the slot's shared memory and answers with the
batch's layout: no array ever crosses the pipe."""
import ctypes
import itertools
import os
import random
import signal
import sys
import traceback
from dataclasses import dataclass

import numpy as np

from . import collate, shared


@dataclass(frozen=True)
class WorkerInfo:
    id: int
    num_workers: int
    seed: int
    dataset: object


_worker_info = None


def get_worker_info():
    """In a worker process: its WorkerInfo (id, num_workers, seed, dataset); else None."""
    return _worker_info


class _SampleContext:
    """The sample being loaded, so that augmentations draw from a stream that is a function
    of (seed, epoch, sample index) alone, whichever process loads the sample."""

    key = None
    _rng = None

    def set(self, seed, epoch, index):
        self.key, self._rng = (seed, epoch, index), None

    def set_batch(self, seed, epoch, batch_id):
        """For collate_fn: a stream per batch, apart from every sample's."""
        self.set(seed, epoch, BATCH_STREAMS + batch_id)

    def generator(self):
        if self.key is None:
            return np.random.default_rng()
        if self._rng is None:
            self._rng = np.random.default_rng([int(k) for k in self.key])
        return self._rng


sample_context = _SampleContext()
BATCH_STREAMS = 2 ** 62  # batch streams' keys, far from any sample index


def sample_generator():
    """The NumPy Generator of the sample being loaded (a fresh one outside a loader)."""
    return sample_context.generator()


class SampleError(Exception):
    """Carries the index of the sample whose loading failed."""

    def __init__(self, index, cause):
        super().__init__(index)
        self.index, self.cause = index, cause


def fetch(dataset, indices, seed, epoch):
    """The samples at `indices`, each loaded with its own random stream."""
    batched = getattr(dataset, "__getitems__", None)
    if batched is not None:
        sample_context.set(seed, epoch, indices[0] if indices else 0)
        try:
            return batched(indices)
        except Exception as e:
            raise SampleError(indices, e) from e
    samples = []
    for i in indices:
        sample_context.set(seed, epoch, i)
        try:
            samples.append(dataset[i])
        except Exception as e:
            raise SampleError(i, e) from e
    return samples


def batch_plan(samples, collate_fn):
    if collate_fn is None:
        return collate.plan(samples)
    return collate.plan_collated(collate_fn(samples))


def _die_with_parent():
    """Ask the kernel to SIGKILL this process when its parent dies (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def worker_loop(worker_id, num_workers, dataset, conn, collate_fn, seed, worker_init_fn,
                parent_pid, epoch=0):
    """Serve tasks until told to stop or the parent goes away."""
    from multiprocessing.reduction import recv_handle, send_handle
    global _worker_info
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    if parent_pid is not None and os.getppid() != parent_pid:
        return
    worker_seed = int(np.random.SeedSequence([seed % 2**64, epoch, worker_id]).generate_state(1)[0])
    random.seed(worker_seed)
    np.random.seed(worker_seed)
    _worker_info = WorkerInfo(worker_id, num_workers, worker_seed, dataset)
    blocks = {}  # slot -> Block
    stream = None  # an IterableDataset's iterator in this worker
    stream_epoch = None
    layouts = _LayoutSender()
    init_error = None
    try:
        if worker_init_fn is not None:
            try:
                worker_init_fn(worker_id)
            except Exception as e:
                init_error = _describe(e, worker_id)
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return
            kind = message[0]
            if kind == "stop":
                return
            if kind == "slot":  # the main process hands over a (new) block for a slot
                _, slot, size = message
                old = blocks.pop(slot, None)
                if old is not None:
                    old.close()
                blocks[slot] = shared.Block(recv_handle(conn), size)
                continue
            _, task_id, slot, indices, epoch = message
            if init_error is not None:
                conn.send(("error", task_id, init_error))
                continue
            try:
                if kind == "next":  # an IterableDataset: the next batch_size items
                    size, drop_last = indices
                    if stream_epoch != epoch:
                        stream, stream_epoch = iter(dataset), epoch
                    samples = [] if stream is None else list(itertools.islice(stream, size))
                    if not samples or (drop_last and len(samples) < size):
                        conn.send(("exhausted", task_id))
                        stream = None
                        continue
                else:
                    samples = fetch(dataset, indices, seed, epoch)
                sample_context.set_batch(seed, epoch, task_id)
                node = batch_plan(samples, collate_fn)
                specs = [s.spec() for s in collate.stacks(node)]
                offsets, total = shared.layout(specs)
                block, new_size = blocks.get(slot), None
                if total == 0:  # nothing to share (strings, empty arrays): no block needed
                    conn.send(("done", task_id, slot, layouts.send(node), None))
                    continue
                if block is None or block.size < total:  # this slot grows: a new block
                    if not blocks:  # the first batch tells the ring's size: check before writing
                        shared.check_capacity(total * (2 * num_workers + 1),
                                              f"the DataLoader's ring ({total / 2**20:.1f} MiB "
                                              "per batch)")
                    if block is not None:
                        block.close()
                    block = blocks[slot] = shared.Block(shared.create_fd(total), total)
                    new_size = total
                collate.fill(node, shared.views(block.array(), specs, offsets))
                conn.send(("done", task_id, slot, layouts.send(node), new_size))
                if new_size is not None:
                    send_handle(conn, block.fd, parent_pid)
            except Exception as e:  # reported to the main process, which re-raises it
                conn.send(("error", task_id, _describe(e, worker_id)))
    except KeyboardInterrupt:
        pass
    finally:
        for block in blocks.values():
            block.close()


class _LayoutSender:
    """Batches of a dataset mostly share one layout: send it once, then only None."""

    def __init__(self):
        self.last = None

    def send(self, node):
        stripped = collate.strip(node)
        key = collate.signature(stripped)
        if key == self.last:
            return None
        self.last = key
        return stripped


def _describe(error, worker_id):
    """A picklable account of a failure: the original exception where it pickles."""
    index = None
    if isinstance(error, SampleError):
        index, error = error.index, error.cause
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    try:
        import pickle
        payload = pickle.dumps(error)
    except Exception:
        payload = None
    return {"type": type(error).__name__, "message": str(error), "traceback": text,
            "index": index, "worker": worker_id, "pid": os.getpid(), "pickled": payload}


START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"
