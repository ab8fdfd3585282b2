"""What runs in a loader's worker process, and the per-sample context datasets can read.

A worker receives tasks (batch id, sample indices, ring slot) over its pipe, fetches the
samples, collates them straight into the slot's shared memory and answers with the
batch's layout: no array ever crosses the pipe."""
import ctypes
import itertools
import os
import random
import select
import signal
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass

import numpy as np

from .. import random as pf_random
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


class _SampleContext(threading.local):
    """The sample being loaded, so that augmentations draw from a stream that is a function
    of (seed, epoch, sample index) alone, whichever process loads the sample. One per
    thread: loaders iterated in two threads must not draw from each other's streams."""

    key = None
    _rng = None

    def set(self, seed, epoch, index):
        self.key, self._rng = (seed, epoch, index), None

    def set_batch(self, seed, epoch, batch_id):
        """For collate_fn: a stream per batch, apart from every sample's."""
        self.set(seed, epoch, BATCH_STREAMS + batch_id)

    def set_stream(self, seed, epoch, worker_id, batch_n):
        """For an IterableDataset, whose samples have no index: a stream per batch that a
        worker draws (worker 0 without workers)."""
        self.key, self._rng = (seed, epoch, ITERABLE_STREAMS + worker_id, batch_n), None

    def generator(self):
        if self.key is None:
            return np.random.default_rng()
        if self._rng is None:
            self._rng = np.random.default_rng([int(k) % 2 ** 64 for k in self.key])  # seed=-1
        return self._rng


sample_context = _SampleContext()
BATCH_STREAMS = 2 ** 62  # batch streams' keys, far from any sample index
ITERABLE_STREAMS = 2 ** 63  # and those of an IterableDataset's batches


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
        sample_context.set(seed, epoch, indices[0] if len(indices) else 0)
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
    return collate.plan_collated(collate.call(collate_fn, samples))


def _die_with_parent(forked_by_main_thread):
    """End this process when its parent dies. The kernel's parent-death signal (Linux) does
    it at once, even inside native code; but it fires when the *thread* that forked ends,
    so a worker forked by any other thread watches its parent's pid from a thread."""
    if forked_by_main_thread:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            return
        except (OSError, AttributeError):
            pass
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:  # an orphan is adopted by another process
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="pipeflow-parent-watch", daemon=True).start()


class _Stop(BaseException):
    """The main process said stop, or closed the pipe (not an Exception: no handler of a
    batch's errors may take it for one)."""


class _Worker:
    """A worker's state: its dataset, its pipe, its slots and the credits for them.

    Per epoch the main process sends one message (the first epoch's comes with the fork):
    this worker's batches (or, for an IterableDataset, a request to stream), and, for an
    epoch of unknown length, further batches as earlier ones are used. A batch needs
    a free slot: the main process marks slots free in the shared `free` flags and counts
    them up on the `credits` semaphore when no batch refers to them any longer, so no
    message crosses the pipe per batch except the result."""

    def __init__(self, worker_id, num_workers, dataset, conn, collate_fn, credits, free,
                 blocks, ring_slots, parent_pid):
        self.id, self.num_workers, self.dataset, self.conn = worker_id, num_workers, dataset, conn
        self.collate_fn, self.credits, self.free = collate_fn, credits, free
        self.ring_slots, self.parent_pid = ring_slots, parent_pid  # slots it starts with
        self.blocks = blocks  # slot -> Block (earlier workers' written slots, and its own)
        self.layouts = _LayoutSender()
        self.dealt = deque()  # chunks of the epoch's batches that came while it ran
        self.init_error = None
        # poll sets made once: Connection.poll and connection.wait build a selector per call
        self.pipe_poll, self.slot_poll = select.poll(), select.poll()
        self.pipe_poll.register(conn.fileno(), select.POLLIN)
        for fd in (conn.fileno(), credits.fileno()):
            self.slot_poll.register(fd, select.POLLIN)

    def run(self, seed, epoch, share, worker_init_fn):
        global _worker_info
        worker_seed = int(np.random.SeedSequence([seed % 2 ** 64, epoch, self.id]).generate_state(1)[0])
        random.seed(worker_seed)
        np.random.seed(worker_seed)
        pf_random.default_generator.manual_seed(worker_seed)  # pf.rand and friends (CPU only:
        # a forked child must not touch CUDA)
        _worker_info = WorkerInfo(self.id, self.num_workers, worker_seed, self.dataset)
        if worker_init_fn is not None:
            try:
                worker_init_fn(self.id)
            except Exception as e:
                self.init_error = _describe(e, self.id)
        try:
            self._serve(epoch, seed, share)
            while True:
                message = self._recv()
                if message[0] == "epoch":
                    self._serve(*message[1:])
                elif message[0] == "cancel":
                    self._send(("cancelled",))
        except (_Stop, KeyboardInterrupt):
            pass
        finally:
            for block in self.blocks.values():
                block.close()

    def _send(self, message):
        try:
            self.conn.send(message)
        except OSError:  # the main process shut the pipe: it is stopping this worker
            raise _Stop from None

    def _recv(self):
        try:
            message = self.conn.recv()
        except (EOFError, OSError):
            raise _Stop from None
        if message[0] == "stop":
            raise _Stop
        return message

    def _cancelled(self):
        """Whether the main process cancelled this epoch (checked between batches)."""
        while self.pipe_poll.poll(0):  # a message, or the main process went away
            if self._read_in_epoch():
                return True
        return False

    def _read_in_epoch(self):
        """Read a message in an epoch: a chunk of batches is queued; True for a cancel
        (answered)."""
        message = self._recv()
        if message[0] == "cancel":
            self._send(("cancelled",))
            return True
        if message[0] == "tasks":
            self.dealt.append(message[1:])
        return False

    def _dealt_tasks(self, batches, more):
        """The epoch's (batch id, indices): `batches`, then, while `more` are to come, the
        chunks the main process deals (the epoch ends early if it cancels meanwhile)."""
        while True:
            yield from batches
            if not more:
                return
            while not self.dealt:
                if self._read_in_epoch():
                    return
            batches, more = self.dealt.popleft()

    def _take_slot(self):
        """A free slot: wait for a credit, still answering the pipe while waiting."""
        while not self.credits.try_acquire():
            self.slot_poll.poll()
            if self._cancelled():
                return None
        slot = int(np.argmax(self.free))  # the first free one (a credit says there is one)
        self.free[slot] = 0
        return slot

    def _give_back(self, slot):
        self.free[slot] = 1
        self.credits.release()

    def _serve(self, epoch, seed, share):
        """One epoch: `share` is ("tasks", batches, more to come) or, for an
        IterableDataset, ("stream", batch_size, drop_last)."""
        self.dealt.clear()
        if share[0] == "stream":
            _, size, drop_last = share
            try:
                stream = iter(self.dataset)
            except Exception as e:
                self._send(("error", 0, _describe(e, self.id)))
                return
            tasks = (None for _ in iter(int, 1))  # as many as the stream has
        else:
            tasks = self._dealt_tasks(*share[1:])
        for n, task in enumerate(tasks):
            if self._cancelled():
                return
            slot = self._take_slot()
            if slot is None:
                return
            if self.init_error is not None:
                self._give_back(slot)
                self._send(("error", self._batch_id(task, n), self.init_error))
                return
            try:
                if task is None:
                    sample_context.set_stream(seed, epoch, self.id, n)
                    samples = list(itertools.islice(stream, size))
                    if not samples or (drop_last and len(samples) < size):
                        self._give_back(slot)
                        self._send(("exhausted",))
                        return
                    batch_id = n
                else:
                    batch_id, indices = task
                    samples = fetch(self.dataset, indices, seed, epoch)
                sample_context.set_batch(seed, epoch, batch_id)
                self._write(batch_id, slot, batch_plan(samples, self.collate_fn))
            except Exception as e:  # reported to the main process, which re-raises it
                self._give_back(slot)
                self._send(("error", self._batch_id(task, n), _describe(e, self.id)))
                if task is None:
                    return

    @staticmethod
    def _batch_id(task, n):
        return n if task is None else task[0]

    def _write(self, batch_id, slot, node):
        """Collate into the slot (growing its block if needed) and report the layout."""
        specs = [s.spec() for s in collate.stacks(node)]
        offsets, total = shared.layout(specs)
        block, new_size = self.blocks.get(slot), None
        if total and (block is None or block.size < total):  # this slot grows: a new block
            if not self.blocks:  # the first batch tells the ring's size: check before writing
                shared.check_capacity(total * self.ring_slots * self.num_workers,
                                      f"the DataLoader's ring ({total / 2**20:.1f} MiB per batch)")
            if block is not None:
                block.close()
            block = self.blocks[slot] = shared.Block(shared.create_fd(total), total)
            new_size = total
        if total:
            collate.fill(node, shared.views(block.array(), specs, offsets))
        layout, key = self.layouts.message(node)
        self._send(("done", batch_id, slot, layout, new_size))
        self.layouts.sent(key)
        if new_size is not None:
            try:
                shared.send_fd(self.conn, block.fd, self.parent_pid)
            except OSError:
                raise _Stop from None


def worker_loop(worker_id, num_workers, dataset, conn, collate_fn, seed, worker_init_fn,
                parent_pid, forked_by_main_thread, epoch, share, ring_part, slot_cap,
                ring_slots):
    """A worker process's entry point: serve its `share` of `epoch`, then the epochs the
    main process sends, until told to stop or orphaned. `ring_part` is its part of the
    ring (ring.Ring.for_worker), mapped here anew (a forked copy of the main process's
    mappings would carry their page-locking with it)."""
    _die_with_parent(forked_by_main_thread)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    if parent_pid is not None and os.getppid() != parent_pid:
        return
    flags_fd, credits_fd, slot_fds = ring_part
    flags = shared.Block(flags_fd.fd, slot_cap)  # the slots' free flags, shared
    credits = shared.Credits(credits_fd.fd)      # ... and the count of free ones
    blocks = {slot: shared.Block(handle.fd, size) for slot, (handle, size) in slot_fds.items()}
    try:
        _Worker(worker_id, num_workers, dataset, conn, collate_fn, credits, flags.array(),
                blocks, ring_slots, parent_pid).run(seed, epoch, share, worker_init_fn)
    finally:
        flags.close()
        credits.close()


class _LayoutSender:
    """Batches of a dataset mostly share one layout: send it once, then only None."""

    def __init__(self):
        self.last = None

    def message(self, node):
        """(what to send for `node`'s layout, its signature for sent() once it is sent)."""
        stripped = collate.strip(node)
        key = collate.signature(stripped)
        return (None if key is not None and key == self.last else stripped), key

    def sent(self, key):
        self.last = key


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
