"""DataLoader: batches from a dataset, in the main process or from a pool of worker
processes that collate straight into a ring of shared-memory slots.

Batch order is a pure function of (seed, epoch, position) and every sample is loaded with
a random stream of its own (worker.sample_generator), so the batches do not depend on
num_workers, and the loader's whole resumable state is {seed, epoch, batches served}."""
import functools
import itertools
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import time
import weakref
from collections import deque

import numpy as np

from .. import backend
from ..tensor import Tensor
from . import collate as collate_module
from . import shared, worker
from .dataset import IterableDataset
from .sampler import BatchSampler, RandomSampler, SequentialSampler


class DataLoader:
    """PyTorch's DataLoader arguments, plus ``seed=`` (the shuffle order and per-sample
    random streams are functions of (seed, epoch, sample index)) and ``device=`` (batches
    arrive on that device, copied ahead of use)."""

    def __init__(self, dataset, batch_size=1, shuffle=False, sampler=None, batch_sampler=None,
                 num_workers=0, collate_fn=None, pin_memory=False, drop_last=False, timeout=0,
                 worker_init_fn=None, prefetch_factor=None, persistent_workers=False,
                 generator=None, multiprocessing_context=None, seed=None, device=None):
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 "
                             "to disable multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if prefetch_factor is not None and num_workers == 0:
            raise ValueError("prefetch_factor option could only be specified in "
                             "multiprocessing. let num_workers > 0 to enable multiprocessing.")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        if num_workers and prefetch_factor is not None and prefetch_factor < 1:
            raise ValueError(f"prefetch_factor must be a positive integer, got {prefetch_factor}")
        if multiprocessing_context is not None:
            if num_workers == 0:
                raise ValueError("multiprocessing_context can only be used with multi-process "
                                 f"loading (num_workers > 0), but got num_workers={num_workers}")
            if isinstance(multiprocessing_context, str):
                methods = multiprocessing.get_all_start_methods()
                if multiprocessing_context not in methods:
                    raise ValueError(f"multiprocessing_context option should specify a valid "
                                     f"start method in {methods!r}, but got "
                                     f"multiprocessing_context={multiprocessing_context!r}")
        if batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually "
                             "exclusive with drop_last")
        self.iterable = isinstance(dataset, IterableDataset)
        if self.iterable and (shuffle or sampler is not None or batch_sampler is not None):
            raise ValueError("DataLoader with IterableDataset: expected unspecified shuffle, "
                             "sampler and batch_sampler options")
        if batch_sampler is not None and (batch_size != 1 or shuffle or sampler is not None
                                          or drop_last):
            raise ValueError("batch_sampler option is mutually exclusive with batch_size, "
                             "shuffle, sampler, and drop_last")
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if seed is None:
            seed = generator.initial_seed() if generator is not None else \
                int(np.random.SeedSequence().entropy % (2 ** 63))
        self.dataset, self.num_workers, self.seed = dataset, num_workers, int(seed)
        if batch_size is None and collate_fn is None:  # no auto-batching: samples one by one
            collate_fn = collate_module.convert_single
        self.collate_fn, self.pin_memory, self.timeout = collate_fn, pin_memory, timeout
        self.worker_init_fn, self.persistent_workers = worker_init_fn, persistent_workers
        self.prefetch_factor = 2 if prefetch_factor is None and num_workers else prefetch_factor
        self.multiprocessing_context = multiprocessing_context
        self.device = None if device is None else backend.device(device)
        self.batch_size, self.drop_last = batch_size, drop_last
        self._own_sampler = not self.iterable and shuffle and sampler is None and batch_sampler is None
        if not self.iterable and batch_sampler is None:
            if sampler is None:
                sampler = (RandomSampler(dataset, seed=self.seed) if shuffle
                           else SequentialSampler(dataset))
            batch_sampler = BatchSampler(sampler, 1 if batch_size is None else batch_size,
                                         drop_last)
        self.sampler, self.batch_sampler = sampler, batch_sampler
        self.epoch, self._resume_at, self._served = 0, 0, 0
        self._pool = None

    def __len__(self):
        if self.iterable:
            n, size = len(self.dataset), 1 if self.batch_size is None else self.batch_size
            return n // size if self.drop_last else -(-n // size)
        return len(self.batch_sampler)

    # --- resumable state ----------------------------------------------------------------
    def state_dict(self):
        """{seed, epoch, batches served}: a new loader given this state continues with
        exactly the remaining batches of the epoch (same order, same augmentations)."""
        return {"seed": self.seed, "epoch": self.epoch, "batches_served": self._served}

    def load_state_dict(self, state):
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])
        self._resume_at = self._served = int(state["batches_served"])
        if self._own_sampler:
            self.sampler.seed = self.seed
        if self._pool is not None and self.seed != getattr(self._pool, "seed", None):
            self._pool.shutdown()

    # --- iteration ------------------------------------------------------------------------
    def _batch_indices(self, start):
        if hasattr(self.batch_sampler, "set_epoch"):
            self.batch_sampler.set_epoch(self.epoch)
        return itertools.islice(iter(self.batch_sampler), start, None)

    def __iter__(self):
        start, self._resume_at = self._resume_at, 0
        self._served = start
        if self.num_workers == 0:
            batches = _SingleProcess(self, start)
        else:  # each iterator has its own workers, unless they persist across epochs
            pool = self._pool if self.persistent_workers else None
            if pool is None or not pool.alive() or pool.busy:
                if pool is not None:  # a new iterator replaces an unfinished one
                    pool.shutdown()
                pool = _WorkerPool(self)
                if self.persistent_workers:
                    self._pool = pool
            batches = pool.epoch(self, start)
        if self.iterable and start:  # a stream can't seek: skip the batches already served
            batches = itertools.islice(batches, start, None)
        return _Served(self, _on_device(batches, self.device))

    def __del__(self):
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown()


class _Served:
    """The iterator a loop sees: counts served batches and finishes the epoch."""

    def __init__(self, loader, batches):
        self.loader, self.batches = loader, batches

    def __iter__(self):
        return self

    def __next__(self):
        if self.batches is None:
            raise StopIteration
        try:
            batch = next(self.batches)
        except StopIteration:
            self.batches = None
            self.loader.epoch += 1
            self.loader._served = 0
            self.close()
            raise
        self.loader._served += 1
        return batch

    def close(self):
        if self.batches is None:
            return
        close = getattr(self.batches, "close", None)
        if close is not None:
            close()

    def __del__(self):
        self.close()


def _SingleProcess(loader, start):
    """Batches fetched and collated in this process (into page-locked memory when
    pin_memory is set and there is a GPU, so the copy to the device can overlap)."""
    collate_fn = loader.collate_fn or collate_module.default_collate
    if loader.pin_memory and backend.cuda_available():
        collate_fn = functools.partial(_collate_pinned, loader.collate_fn)
    if loader.iterable:
        yield from _iterable_batches(loader, iter(loader.dataset), collate_fn)
        return
    for batch_id, indices in enumerate(loader._batch_indices(start), start):
        try:
            samples = worker.fetch(loader.dataset, indices, loader.seed, loader.epoch)
            worker.sample_context.set_batch(loader.seed, loader.epoch, batch_id)
            yield collate_fn(samples)
        except worker.SampleError as e:
            raise e.cause
        finally:
            worker.sample_context.key = None


def _collate_pinned(collate_fn, samples):
    """The batch, its arrays in pinned host memory (the workers' path, minus the ring)."""
    node = worker.batch_plan(samples, collate_fn)
    arrays = [backend.pinned_empty(*s.spec()) for s in collate_module.stacks(node)]
    collate_module.fill(node, arrays)
    return collate_module.assemble(node, iter(arrays))


def _iterable_batches(loader, items, collate_fn):
    size = 1 if loader.batch_size is None else loader.batch_size
    while True:
        chunk = list(itertools.islice(items, size))
        if not chunk or (loader.drop_last and len(chunk) < size):
            return
        yield collate_fn(chunk)


# --- the worker pool ----------------------------------------------------------------------
_EXHAUSTED = object()  # a worker's IterableDataset has no more batches


class _Layout:
    """A batch layout a worker sent: its plan, and where each array lies in a slot."""

    __slots__ = ("node", "specs", "offsets")

    def __init__(self, node):
        self.node = node
        self.specs = [s.spec() for s in collate_module.stacks(node)]
        self.offsets, _ = shared.layout(self.specs)


class _Failure:
    """A worker's error, raised when its batch's turn comes (earlier batches are served)."""

    def __init__(self, info):
        self.info = info


class WorkerError(RuntimeError):
    """A worker died or failed in a way that cannot be re-raised as its own exception."""


class _WorkerPool:
    """Worker processes, their pipes, and the ring of shared-memory slots they fill."""

    def __init__(self, loader):
        ctx = loader.multiprocessing_context
        if ctx is None or isinstance(ctx, str):
            ctx = multiprocessing.get_context(ctx or worker.START_METHOD)
        self.num_workers, self.timeout = loader.num_workers, loader.timeout
        self.seed = loader.seed
        self.pin = loader.pin_memory and backend.cuda_available()
        self.conns, self.procs = [], []
        for wid in range(loader.num_workers):
            ours, theirs = ctx.Pipe(duplex=True)
            proc = ctx.Process(target=worker.worker_loop, daemon=True,
                               args=(wid, loader.num_workers, loader.dataset, theirs,
                                     loader.collate_fn, loader.seed, loader.worker_init_fn,
                                     None if ctx.get_start_method() == "forkserver"
                                     else os.getpid(), loader.epoch))
            proc.start()
            theirs.close()
            self.conns.append(ours)
            self.procs.append(proc)
        self.blocks = {}          # slot -> shared.Block (the main process's mapping)
        self.generation = {}      # slot -> int, bumped when the slot gets a new block
        self.known = [dict() for _ in self.procs]  # per worker: slot -> generation it maps
        self.free = deque()       # slots no batch refers to any longer
        self.slot_count = 0
        self.closed, self.busy = False, False
        self._owner = {}          # IterableDataset task -> worker
        self.layouts = {}         # worker -> the _Layout of its last batch
        self._finalizer = weakref.finalize(self, _stop_workers, self.conns, self.procs,
                                           self.blocks)

    def alive(self):
        return not self.closed and all(p.is_alive() for p in self.procs)

    def _slot(self):
        if self.free:
            return self.free.popleft()
        self.slot_count += 1
        return self.slot_count - 1

    def epoch(self, loader, start):
        """A generator of the epoch's batches, in order, from the workers."""
        self.busy = True
        if loader.iterable:
            return self._iterable_epoch(loader)
        return self._indexed_epoch(loader, start)

    def _indexed_epoch(self, loader, start):
        tasks = enumerate(loader._batch_indices(start), start)
        limit = loader.prefetch_factor * self.num_workers
        outstanding, ready, next_id = {}, {}, start
        exhausted, failed = False, True
        try:
            while True:
                while not exhausted and len(outstanding) < limit:
                    task = next(tasks, None)
                    if task is None:
                        exhausted = True
                        break
                    batch_id, indices = task
                    wid = batch_id % self.num_workers
                    slot = self._slot()
                    self._send_task(wid, batch_id, slot, indices, loader.epoch)
                    outstanding[batch_id] = (wid, slot)
                if next_id in ready:
                    batch = ready.pop(next_id)
                    if isinstance(batch, _Failure):
                        self._raise_worker_error(batch.info)
                    yield batch
                    del batch
                    next_id += 1
                    continue
                if not outstanding:
                    failed = False
                    return
                for batch_id, batch in self._receive(outstanding, next_id):
                    ready[batch_id] = batch
        except GeneratorExit:  # the loop stopped early: persistent workers stay
            failed = False
            raise
        finally:
            self.busy = False
            self._end_epoch(loader, outstanding, failed)

    def _end_epoch(self, loader, outstanding, failed):
        """Keep persistent workers, once the tasks in flight are answered; else stop."""
        if loader.persistent_workers and not failed:
            try:
                while outstanding:
                    self._receive(outstanding, min(outstanding))
                return
            except Exception:
                pass
        self.shutdown()

    def _iterable_epoch(self, loader):
        """Each worker streams its own copy of the dataset (shard it with
        get_worker_info()); batches come round-robin, as in PyTorch."""
        active = list(range(self.num_workers))
        outstanding, task_id, turn = {}, 0, 0
        try:
            for wid in active:
                for _ in range(loader.prefetch_factor):
                    self._send_next(wid, task_id, loader, outstanding)
                    task_id += 1
            per_worker = {wid: deque() for wid in active}
            while active:
                pos = turn % len(active)
                wid = active[pos]
                queue = per_worker[wid]
                while not queue:  # a worker's batches arrive in the order it was asked
                    for batch_id, batch in self._receive(outstanding, min(outstanding)):
                        per_worker[self._owner.pop(batch_id)].append((batch_id, batch))
                _, batch = queue.popleft()
                if isinstance(batch, _Failure):
                    self._raise_worker_error(batch.info)
                if batch is _EXHAUSTED:
                    del active[pos]
                    turn = pos
                    continue
                yield batch
                turn += 1
                self._send_next(wid, task_id, loader, outstanding)
                task_id += 1
            while outstanding:  # drain the prefetched tasks (answered 'exhausted')
                for batch_id, batch in self._receive(outstanding, min(outstanding)):
                    self._owner.pop(batch_id, None)
        finally:
            self.busy = False
            if not loader.persistent_workers or active or outstanding:
                self.shutdown()

    def _send_next(self, wid, task_id, loader, outstanding):
        slot = self._slot()
        self._owner[task_id] = wid
        size = 1 if loader.batch_size is None else loader.batch_size
        self._send_task(wid, task_id, slot, (size, loader.drop_last),
                        loader.epoch, kind="next")
        outstanding[task_id] = (wid, slot)

    def _send_task(self, wid, batch_id, slot, indices, epoch, kind="task"):
        from multiprocessing.reduction import send_handle
        conn = self.conns[wid]
        gen = self.generation.get(slot)
        try:
            if gen is not None and self.known[wid].get(slot) != gen:  # hand over the block
                block = self.blocks[slot]
                conn.send(("slot", slot, block.size))
                send_handle(conn, block.fd, self.procs[wid].pid)
                self.known[wid][slot] = gen
            conn.send((kind, batch_id, slot, indices, epoch))
        except OSError:  # the worker is gone: say why (outside the except, no chained error)
            failed = True
        else:
            failed = False
        if failed:
            self._raise_dead(wid)

    def _receive(self, outstanding, waiting_for):
        """Wait for worker messages (or a worker's death, or the timeout)."""
        from multiprocessing.reduction import recv_handle
        waitables = self.conns + [p.sentinel for p in self.procs]
        ready = multiprocessing.connection.wait(waitables, self.timeout or None)
        if not ready:
            wid = outstanding[waiting_for][0]
            raise RuntimeError(f"DataLoader timed out after {self.timeout} seconds waiting for "
                               f"batch {waiting_for} from worker {wid} "
                               f"(pid {self.procs[wid].pid})")
        results = []
        for item in ready:
            if item in self.conns:
                wid = self.conns.index(item)
                try:
                    message = item.recv()
                except (EOFError, OSError):
                    message = None
                if message is None:
                    self._raise_dead(wid)
                if message[0] == "error":
                    if message[1] is None or message[1] not in outstanding:
                        self._raise_worker_error(message[2])
                    outstanding.pop(message[1])
                    results.append((message[1], _Failure(message[2])))
                    continue
                if message[0] == "exhausted":
                    wid_slot = outstanding.pop(message[1])
                    self.free.append(wid_slot[1])
                    results.append((message[1], _EXHAUSTED))
                    continue
                _, batch_id, slot, node, new_size = message
                if new_size is not None:  # the worker grew this slot: adopt its new block
                    self._adopt_block(wid, slot, shared.Block(recv_handle(item), new_size))
                if node is not None:  # a new layout (else: the worker's last one again)
                    self.layouts[wid] = _Layout(node)
                del outstanding[batch_id]
                results.append((batch_id, self._assemble(slot, self.layouts[wid])))
            else:
                self._raise_dead(next(i for i, p in enumerate(self.procs) if p.sentinel == item))
        return results

    def _adopt_block(self, wid, slot, block):
        """A worker grew a slot (its first batch there, or a larger one): map its block.
        (The worker checked that the ring fits in shared memory before writing.)"""
        old = self.blocks.get(slot)
        if old is not None:
            old.close()
        self.blocks[slot] = block
        if self.pin:
            block.pin()
        self.generation[slot] = self.generation.get(slot, 0) + 1
        self.known[wid][slot] = self.generation[slot]

    def _assemble(self, slot, layout):
        """The batch as Tensors viewing the slot; the slot returns to the ring only when
        no array refers to this batch any longer."""
        owner = self.blocks[slot].array() if slot in self.blocks else np.zeros(0, np.uint8)
        weakref.finalize(owner, self.free.append, slot)
        arrays = shared.views(owner, layout.specs, layout.offsets)
        return collate_module.assemble(layout.node, iter(arrays))

    def _raise_dead(self, wid):
        proc = self.procs[wid]
        proc.join(0.1)
        code, pid = proc.exitcode, proc.pid
        self.shutdown()
        if code is not None and code < 0:
            sig = signal.Signals(-code)
            cause = {signal.SIGKILL: "it was killed, most likely by the kernel's out-of-memory "
                                     "killer (check dmesg)",
                     signal.SIGBUS: "a bus error, most likely /dev/shm ran out of space",
                     signal.SIGSEGV: "a segmentation fault in native code"}.get(
                sig, f"signal {sig.name}")
            raise WorkerError(f"DataLoader worker {wid} (pid {pid}) was killed by signal "
                              f"{sig.name}: {cause}")
        raise WorkerError(f"DataLoader worker {wid} (pid {pid}) exited unexpectedly with "
                          f"exit code {code}")

    def _raise_worker_error(self, info):
        self.shutdown()
        where = (f"in DataLoader worker {info['worker']} (pid {info['pid']})"
                 + (f" while loading sample index {info['index']}"
                    if info["index"] is not None else ""))
        text = f"{info['message']}\n\nCaught {info['type']} {where}.\nWorker traceback:\n" \
               f"{info['traceback']}"
        error = None
        if info["pickled"] is not None:
            try:
                original = pickle.loads(info["pickled"])
                error = type(original)(text)
            except Exception:
                error = None
        if error is None:
            error = WorkerError(f"{info['type']}: {text}")
        error.sample_index = info["index"]
        raise error

    def shutdown(self):
        if not self.closed:
            self.closed = True
            self._finalizer()


def _stop_workers(conns, procs, blocks):
    for conn in conns:
        try:
            conn.send(("stop",))
        except (OSError, ValueError):
            pass
    deadline = time.monotonic() + 1.0
    for proc in procs:  # one grace period for all, not one each
        proc.join(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.is_alive():
            proc.kill()
    for proc in procs:
        proc.join(1.0)
        if not proc.is_alive():
            proc.close()  # frees its sentinel descriptor now, not when a batch lets go
    for conn in conns:
        conn.close()
    for block in blocks.values():
        block.close()
    blocks.clear()


# --- device prefetch ----------------------------------------------------------------------
def _on_device(batches, device):
    """Batches moved to `device`; on CUDA batch n+1 is copied on a side stream while
    batch n is in use."""
    if device is None or device.type == "cpu":
        yield from batches
        return
    cupy = backend.cupy
    backend.require_cuda("DataLoader(device='cuda')")
    with cupy.cuda.Device(device.index):
        stream = cupy.cuda.Stream(non_blocking=True)
        pending = None
        for host in batches:
            with stream:
                moved = _map(host, lambda t: t.to(device, non_blocking=True))
                event = stream.record()
            if pending is not None:
                yield _ready(*pending)
            pending = (host, moved, event)
        if pending is not None:
            yield _ready(*pending)


def _ready(host, moved, event):
    event.synchronize()  # the copy has finished: the host slot may be reused now
    backend.cupy.cuda.get_current_stream().wait_event(event)
    return moved


def _map(batch, fn):
    if isinstance(batch, Tensor):
        return fn(batch)
    if isinstance(batch, dict):
        return {k: _map(v, fn) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [_map(v, fn) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch
