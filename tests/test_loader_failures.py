"""The multiprocessing DataLoader when things go wrong: worker exceptions, workers killed
by signals, timeouts, /dev/shm too small, interrupted and abandoned iterations, a main
process that is SIGKILLed, and iterator churn. Every test also checks that nothing is
left behind: no worker processes, no file descriptors, no threads, no /dev/shm entries.

Linux only (/proc, fork, PR_SET_PDEATHSIG)."""
import contextlib
import ctypes
import faulthandler
import gc
import itertools
import multiprocessing
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import numpy as np
import pytest

import pipeflow as pf
from pipeflow.data import (DataLoader, Dataset, IterableDataset, SharedMemoryError,
                           TensorDataset, WorkerError, get_worker_info, sample_generator, shared)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="uses /proc, fork and PR_SET_PDEATHSIG")


# --- datasets (module level, so that fork and spawn both find them) --------------------------
class Numbers(Dataset):
    """Sample i is a float32 vector full of i."""

    def __init__(self, n=64, width=4, delay=0.0):
        self.n, self.width, self.delay = n, width, delay

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if self.delay:
            time.sleep(self.delay)
        return np.full(self.width, i, np.float32)


class TwoArgError(Exception):
    """Constructor needs two arguments; args holds one: pickles, but cannot be unpickled."""

    def __init__(self, code, detail):
        super().__init__(f"code {code}: {detail}")
        self.code, self.detail = code, detail


class UnpicklableError(Exception):
    """Carries a lock: cannot even be pickled."""

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


class Faulty(Numbers):
    """Raises on sample `bad`, from a method whose name must show in the traceback."""

    def __init__(self, bad=13, kind="value", n=32, delay=0.0):
        super().__init__(n, delay=delay)
        self.bad, self.kind = bad, kind

    def __getitem__(self, i):
        if i == self.bad:
            self.decode_sample_for_test(i)
        return super().__getitem__(i)

    def decode_sample_for_test(self, i):
        if self.kind == "value":
            raise ValueError(f"bad sample {i}")
        if self.kind == "two_args":
            raise TwoArgError(7, f"broken sample {i}")
        raise UnpicklableError(f"unpicklable sample {i}")


class FaultyStream(IterableDataset):
    """Each worker streams 0, 1, ...; item `bad` raises."""

    def __init__(self, bad=5, n=20):
        self.bad, self.n = bad, n

    def __iter__(self):
        for i in range(self.n):
            if i == self.bad:
                raise ValueError(f"bad stream item {i}")
            yield np.full(2, i, np.float32)


def failing_init(worker_id):
    raise ValueError(f"worker_init_fn failed in worker {worker_id}")


def failing_collate(samples):
    raise TypeError(f"collate_fn refuses {len(samples)} samples")


def _only_in_a_worker():
    if get_worker_info() is None:  # never take the test process down with it
        raise RuntimeError("this dataset kills its process: use it with num_workers > 0")


class Killer(Numbers):
    """Sample `at` kills the worker loading it: with a signal, or by dereferencing NULL."""

    def __init__(self, at=5, how="SIGKILL", n=32, pidfile=None):
        super().__init__(n)
        self.at, self.how, self.pidfile = at, how, pidfile

    def __getitem__(self, i):
        if i == self.at:
            _only_in_a_worker()
            if self.pidfile:
                with open(self.pidfile, "w") as f:
                    f.write(str(os.getpid()))
            if self.how == "SIGSEGV":
                faulthandler.disable()  # a plain crash, without pytest's traceback dump
                ctypes.string_at(0)
            os.kill(os.getpid(), getattr(signal, self.how))
            time.sleep(10)
        return super().__getitem__(i)


class Sleeper(Numbers):
    """Every sample takes `seconds`."""

    def __init__(self, seconds=30.0, n=16):
        super().__init__(n)
        self.seconds = seconds

    def __getitem__(self, i):
        time.sleep(self.seconds)
        return super().__getitem__(i)


class Zeros(Dataset):
    """Large samples that cost nothing to make (np.zeros maps pages lazily)."""

    def __init__(self, nbytes, n=8):
        self.nbytes, self.n = nbytes, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.zeros(self.nbytes, np.uint8)


class Augmented(Dataset):
    """A random augmentation drawn from the sample's own stream."""

    def __init__(self, n=40):
        self.base = np.arange(n * 3, dtype=np.float64).reshape(n, 3)

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        rng = sample_generator()
        return {"x": self.base[i] + rng.normal(size=3), "flip": int(rng.integers(0, 2)),
                "index": i}


# --- what a process holds ------------------------------------------------------------------
def fd_count():
    return len(os.listdir("/proc/self/fd"))


def open_fds():
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own descriptor, closed by now
            pass
    return out


def task_count():
    return len(os.listdir("/proc/self/task"))


def shm_entries():
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def _stat(pid):
    """(state, ppid) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return fields[0], int(fields[1])


def helper_pids():
    """multiprocessing's once-per-process helpers: the resource tracker ("spawn" starts
    it) and the fork server. They are not the loader's to stop."""
    from multiprocessing import forkserver, resource_tracker
    pids = {getattr(resource_tracker._resource_tracker, "_pid", None),
            getattr(forkserver._forkserver, "_forkserver_pid", None)}
    return pids - {None}


def child_pids(parent=None):
    """Processes whose parent is `parent` (this process, leaving out multiprocessing's
    helpers), zombies included."""
    if parent is None:
        return _child_pids(os.getpid()) - helper_pids()
    return _child_pids(parent)


def _child_pids(parent):
    out = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None and st[1] == parent:
                out.add(int(name))
    return out


def running(pid):
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def wait_until(predicate, seconds):
    deadline = time.monotonic() + seconds
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


class Watch:
    """The child processes started since it was made: the loaders' workers (found through
    /proc, so that the tests do not depend on where a loader keeps its pool)."""

    def __init__(self):
        self.kids = child_pids()

    def workers(self):
        """The workers running now, oldest first."""
        return sorted(p for p in child_pids() - self.kids if running(p))

    def gone(self):
        """No worker is left, not even as an unreaped zombie."""
        return not (child_pids() - self.kids)


@contextlib.contextmanager
def leaves_nothing_behind(settle=3.0, helpers=()):
    """The block may start workers; after it (and after its loaders are dropped) no new
    child process, file descriptor, thread or /dev/shm entry may remain.

    multiprocessing's own once-per-process helpers (the resource tracker that "spawn"
    starts, the fork server) are started first, so that they count as the baseline."""
    from multiprocessing import resource_tracker
    resource_tracker.ensure_running()
    for start_helper in helpers:
        start_helper()
    gc.collect()
    watch = Watch()
    fds, threads, tasks, shm = (open_fds(), threading.active_count(), task_count(),
                                shm_entries())
    yield watch
    gc.collect()
    assert wait_until(watch.gone, settle), \
        f"worker processes left: {sorted(child_pids() - watch.kids)}"
    assert multiprocessing.active_children() == []
    assert wait_until(lambda: not (open_fds().keys() - fds.keys()), settle), \
        f"file descriptors left open: { {k: v for k, v in open_fds().items() if k not in fds} }"
    assert threading.active_count() <= threads and task_count() <= tasks
    assert shm_entries() == shm
    assert not [n for n in shm_entries() if n.startswith("pipeflow")]


@pytest.fixture(autouse=True)
def hang_guard():
    """No pytest-timeout here: a hang dumps every thread's stack and ends the run instead."""
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def drain(loader):
    return [b for b in loader]


# --- 1. a worker raises ---------------------------------------------------------------------
@pytest.mark.parametrize("context", [None, "spawn"])
def test_worker_exception_is_reraised_with_its_type_traceback_and_index(context):
    with leaves_nothing_behind() as watch:
        loader = DataLoader(Faulty(), batch_size=4, num_workers=2,
                            multiprocessing_context=context)
        with pytest.raises(ValueError) as info:
            for batch in loader:
                assert len(watch.workers()) == 2
        assert watch.gone()  # the workers were stopped (and reaped) before the raise
        message = str(info.value)
        assert "bad sample 13" in message
        assert "decode_sample_for_test" in message  # the worker's traceback
        assert "13" in message.replace("bad sample 13", "") and "index 13" in message
        assert info.value.sample_index == 13
        del loader, info, batch


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_before_a_failing_one_are_served_first(workers):
    """Batch 3 holds sample 13. Worker 1 (batches 1 and 3) reaches it while worker 0 is still
    loading batch 2: batches 0-2 must still come first (PyTorch's order, and what
    num_workers=0 does), so that what was served before an error, and the loader's
    state_dict then, do not depend on the workers' timing."""
    with leaves_nothing_behind():
        loader = DataLoader(Faulty(delay=0.05), batch_size=4, num_workers=workers)
        served = []
        with pytest.raises(ValueError, match="bad sample 13"):
            for batch in loader:
                served.append(batch[:, 0].tolist())
        assert served == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
        assert loader.state_dict()["batches_served"] == 3
        del loader, batch


def test_worker_exception_after_error_a_new_epoch_works():
    with leaves_nothing_behind():
        loader = DataLoader(Faulty(bad=-1), batch_size=4, num_workers=2)
        assert len(drain(loader)) == 8
        loader.dataset.bad = 5  # fork: the next epoch's workers see it
        with pytest.raises(ValueError, match="bad sample 5"):
            drain(loader)
        loader.dataset.bad = -1
        assert [b[:, 0].tolist() for b in loader][-1] == [28, 29, 30, 31]
        del loader


@pytest.mark.parametrize("kind,name", [("two_args", "TwoArgError"),
                                       ("unpicklable", "UnpicklableError")])
def test_worker_exception_that_does_not_survive_pickle_still_names_type_and_index(kind, name):
    with pytest.raises(Exception):
        pickle.loads(pickle.dumps(TwoArgError(1, "x")))  # the premise
    with leaves_nothing_behind():
        loader = DataLoader(Faulty(kind=kind), batch_size=4, num_workers=2)
        with pytest.raises(Exception) as info:
            drain(loader)
        assert isinstance(info.value, (WorkerError, TwoArgError, UnpicklableError))
        message = str(info.value)
        assert name in message and "index 13" in message and "sample 13" in message
        assert "decode_sample_for_test" in message
        del loader, info


@pytest.mark.parametrize("where", ["worker_init_fn", "collate_fn", "iterable"])
def test_other_worker_failures_are_reraised_with_their_type(where):
    if where == "worker_init_fn":
        loader = DataLoader(Numbers(), batch_size=4, num_workers=2, worker_init_fn=failing_init)
        kind, text = ValueError, "worker_init_fn failed in worker"
    elif where == "collate_fn":
        loader = DataLoader(Numbers(), batch_size=4, num_workers=2, collate_fn=failing_collate)
        kind, text = TypeError, "collate_fn refuses 4 samples"
    else:
        loader = DataLoader(FaultyStream(), batch_size=2, num_workers=2)
        kind, text = ValueError, "bad stream item 5"
    with leaves_nothing_behind() as watch:
        start = time.monotonic()
        with pytest.raises(kind, match=text) as info:
            drain(loader)
        assert time.monotonic() - start < 2
        assert "Worker traceback" in str(info.value)
        assert watch.gone()
        del loader, info


# --- 2. a worker is killed ------------------------------------------------------------------
@pytest.mark.parametrize("how,words", [("SIGKILL", ["SIGKILL", "out-of-memory"]),
                                       ("SIGSEGV", ["SIGSEGV", "segmentation fault"])])
def test_worker_killed_by_a_signal_is_reported_quickly(how, words, tmp_path):
    pidfile = tmp_path / "dead.pid"
    with leaves_nothing_behind() as watch:
        loader = DataLoader(Killer(at=9, how=how, pidfile=str(pidfile)), batch_size=4,
                            num_workers=2)
        start = time.monotonic()
        with pytest.raises(WorkerError) as info:
            drain(loader)
        elapsed = time.monotonic() - start
        assert elapsed < 2.0, f"took {elapsed:.2f} s"
        message = str(info.value)
        dead = int(pidfile.read_text())
        assert f"pid {dead}" in message and "worker 0" in message  # batch 2 is worker 0's
        for word in words:
            assert word in message
        assert watch.gone()
        del loader, info


def test_worker_killed_from_outside_is_reported_quickly():
    with leaves_nothing_behind() as watch:
        loader = DataLoader(Numbers(n=400, delay=0.01), batch_size=2, num_workers=2)
        it = iter(loader)
        next(it)
        victim = watch.workers()[0]
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: not running(victim), 2)
        start = time.monotonic()
        with pytest.raises(WorkerError) as info:
            for batch in it:
                del batch  # keep no batch: it would keep its slot's mapping open
        assert time.monotonic() - start < 2.0
        assert f"pid {victim}" in str(info.value) and "SIGKILL" in str(info.value)
        assert watch.gone()
        del loader, info, it


def test_worker_dying_just_before_it_is_sent_a_task_is_reported_as_its_death(monkeypatch):
    """The window between the loader's wait() and its next send: a worker that dies there
    (here: killed right after a batch of the other worker came in) must come out as
    WorkerError naming it, not as a BrokenPipeError from the send. Found by the SIGKILL
    tests above, which hit the window about one run in four."""
    from pipeflow.data import loader as loader_module
    receive, calls = loader_module._WorkerPool._receive, []

    def receive_then_kill_worker_0(self, outstanding, waiting_for):
        results = receive(self, outstanding, waiting_for)
        calls.append(len(results))  # (keeping the batches would keep their slots)
        next_task = max(list(outstanding) + [batch_id for batch_id, _ in results]) + 1
        if len(calls) >= 2 and next_task % 2 == 0 and self.procs[0].is_alive():
            victim = self.procs[0]  # worker 0 is about to be sent batch `next_task`
            os.kill(victim.pid, signal.SIGKILL)
            victim.join(2)
        return results

    monkeypatch.setattr(loader_module._WorkerPool, "_receive", receive_then_kill_worker_0)
    with leaves_nothing_behind():
        loader = DataLoader(Numbers(n=400, delay=0.01), batch_size=2, num_workers=2)
        with pytest.raises(WorkerError, match="worker 0 .* killed by signal SIGKILL"):
            for batch in loader:
                del batch
        del loader


class Cycling(pf.data.Sampler):
    """An endless sampler (no length): 0, 1, ..., n - 1, 0, 1, ..."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return (i % self.n for i in itertools.count())


def test_worker_killed_while_an_endless_sampler_streams_is_reported_quickly(tmp_path):
    """Sample 500 comes in the fourth deal of batches (16 per worker each)."""
    pidfile = tmp_path / "dead.pid"
    with leaves_nothing_behind() as watch:
        loader = DataLoader(Killer(at=500, n=1000, pidfile=str(pidfile)), batch_size=4,
                            sampler=Cycling(1000), num_workers=2)
        start = time.monotonic()
        with pytest.raises(WorkerError, match="worker 1 .* killed by signal SIGKILL") as info:
            for k, batch in enumerate(loader):
                assert batch[0, 0].item() == 4 * k
                del batch
        assert time.monotonic() - start < 5
        # batches up to 124 come before the death, as many as arrive before it is seen
        assert 96 <= k <= 124 and f"pid {int(pidfile.read_text())}" in str(info.value)
        assert watch.gone()
        del loader, info


@pytest.mark.parametrize("persistent", [False, True])
def test_leaving_an_endless_epoch_stops_or_frees_the_workers(persistent):
    with leaves_nothing_behind() as watch:
        loader = DataLoader(Numbers(n=100), batch_size=4, sampler=Cycling(100), num_workers=2,
                            persistent_workers=persistent, timeout=60)
        for epoch in range(2):
            for k, batch in enumerate(loader):
                assert batch[0, 0].item() == (4 * k) % 100
                if k == 99:  # several deals in
                    break
            del batch
            if not persistent:
                assert wait_until(watch.gone, 2)
        assert len(watch.workers()) == (2 if persistent else 0)
        del loader


class Named(Dataset):
    """Sample i is (i, a path-like name): a batch of 4,096 makes a result message of ~300 KB,
    larger than a pipe's buffer."""

    def __len__(self):
        return 10 ** 6

    def __getitem__(self, i):
        if i == getattr(self, "hang_at", None):
            time.sleep(60)
        return np.float32(i), f"/data/images/shard-{i % 977:04d}/image-{i:08d}.jpeg"


def test_large_messages_both_ways_at_once_do_not_deadlock():
    """Each deal of 16 batches of 4,096 indices (~330 KB) and each result (~300 KB) fill the
    pipes both ways: the main process must never block on a send while it isn't reading."""
    with leaves_nothing_behind():
        loader = DataLoader(Named(), batch_size=4096, sampler=Cycling(10 ** 6), num_workers=2,
                            timeout=60)
        for k, (x, names) in enumerate(loader):
            assert x[0].item() == 4096 * k and names[-1] == Named()[4096 * k + 4095][1]
            del x
            if k == 40:  # several deals in
                break
        del loader


def test_timeout_fires_while_a_deal_waits_for_a_hung_worker():
    """Worker 0 hangs in its second batch with a deal too large for its pipe waiting to go
    to it: the batch worker 1 finished is served, then the timeout fires, as in torch."""
    dataset = Named()
    dataset.hang_at = 2 * 4096
    with leaves_nothing_behind():
        loader = DataLoader(dataset, batch_size=4096, sampler=Cycling(10 ** 6), num_workers=2,
                            timeout=2)
        served = []
        start = time.monotonic()
        with pytest.raises(RuntimeError, match="timed out after 2 seconds waiting for batch 2 "
                                               "from worker 0"):
            for x, _ in loader:
                served.append(x[0].item())
                del x
        assert served == [0, 4096] and time.monotonic() - start < 6
        del loader


def test_a_caught_worker_error_keeps_no_loader_alive():
    """The re-raised error must not hold its loader in a reference cycle: with gc off,
    deleting the loader stops its persistent workers at once."""
    gc.disable()
    try:
        with leaves_nothing_behind() as watch:
            loader = DataLoader(Faulty(bad=21, n=40), batch_size=4, num_workers=2,
                                persistent_workers=True, timeout=60)
            with pytest.raises(ValueError, match="bad sample 21"):
                drain(loader)
            first = next(iter(loader))  # new persistent workers, kept by the loader
            assert len(watch.workers()) == 2
            del loader, first
            assert wait_until(watch.gone, 2)
    finally:
        gc.enable()


# --- 3. timeout= ----------------------------------------------------------------------------
@pytest.mark.parametrize("workers", [2, 4])
def test_timeout_raises_and_stops_the_workers(workers):
    """Every worker is stuck in __getitem__: none reads the "stop" message. The error should
    come about 1 s after the timeout however many workers there are."""
    with leaves_nothing_behind() as watch:
        loader = DataLoader(Sleeper(30.0), batch_size=2, num_workers=workers, timeout=1)
        start = time.monotonic()
        with pytest.raises(RuntimeError, match="timed out after 1 seconds") as info:
            next(iter(loader))
        elapsed = time.monotonic() - start
        assert elapsed < 5.0, f"took {elapsed:.2f} s"
        assert watch.gone()
        del loader, info


def test_timeout_is_per_batch_not_per_epoch():
    with leaves_nothing_behind():
        loader = DataLoader(Numbers(n=24, delay=0.1), batch_size=2, num_workers=2, timeout=1)
        assert len(drain(loader)) == 12  # 1.2 s in all, 0.2 s a batch: no timeout
        del loader


# --- 4. /dev/shm too small ------------------------------------------------------------------
@pytest.fixture
def small_shm(monkeypatch):
    """A 64 MiB tmpfs standing in for /dev/shm (this machine's /dev/shm is as large as its
    RAM: filling it for real would take the machine down)."""
    path = tempfile.mkdtemp(prefix="pf-shm-")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", path],
                             capture_output=True).returncode == 0
    if not mounted:
        shutil.rmtree(path)
        pytest.skip(reason="cannot mount a small tmpfs (needs root)")
    monkeypatch.setattr(shared, "SHM_DIR", path)  # fork: the workers inherit it
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path])
        os.rmdir(path)


def test_shared_memory_too_small_is_a_clear_error_before_filling_it(small_shm):
    free = shared.free_bytes()
    assert 60 * 2**20 < free <= 64 * 2**20
    lowest = [free]
    stop = threading.Event()

    def watch():  # the least free space seen while the loader runs
        while not stop.is_set():
            lowest[0] = min(lowest[0], shared.free_bytes())
            time.sleep(0.0002)

    watcher = threading.Thread(target=watch)
    with leaves_nothing_behind():
        loader = DataLoader(Zeros(free // 3 + 1), batch_size=1, num_workers=2)
        watcher.start()
        try:
            with pytest.raises(SharedMemoryError, match="shared memory") as info:
                next(iter(loader))
        finally:
            stop.set()
            watcher.join()
        assert "MiB" in str(info.value)
        del loader, info
    assert wait_until(lambda: shared.free_bytes() == free, 3), "shared memory not given back"
    used = free - lowest[0]
    assert used < free // 2, \
        f"the loader filled {used / 2**20:.1f} of {free / 2**20:.1f} MiB before failing"


def test_shared_memory_check_passes_when_the_ring_fits(small_shm):
    free = shared.free_bytes()
    with leaves_nothing_behind():
        loader = DataLoader(Zeros(free // 16, n=6), batch_size=1, num_workers=2)
        assert len(drain(loader)) == 6
        del loader
    assert wait_until(lambda: shared.free_bytes() == free, 3)


# --- 5. abandoned and interrupted iterations -------------------------------------------------
def test_break_out_of_the_loop_stops_the_workers():
    with leaves_nothing_behind() as watch:
        loader = DataLoader(Numbers(n=200), batch_size=2, num_workers=2)
        for i, batch in enumerate(loader):
            assert len(watch.workers()) == 2
            if i == 3:
                break
        assert wait_until(watch.gone, 2)
        assert not [n for n in shm_entries() if n.startswith("pipeflow")]
        del loader, batch


def test_deleting_the_iterator_stops_the_workers():
    with leaves_nothing_behind() as watch:
        loader = DataLoader(Numbers(n=200), batch_size=2, num_workers=2)
        it = iter(loader)
        next(it)
        assert len(watch.workers()) == 2
        del it
        gc.collect()
        assert wait_until(watch.gone, 2)
        del loader


def test_keyboard_interrupt_in_the_loop_body_stops_the_workers():
    with leaves_nothing_behind() as watch:
        loader = DataLoader(Numbers(n=200), batch_size=2, num_workers=2)
        with pytest.raises(KeyboardInterrupt):
            for i, batch in enumerate(loader):
                del batch
                assert len(watch.workers()) == 2
                if i == 2:
                    raise KeyboardInterrupt
        assert wait_until(watch.gone, 2)
        del loader


def test_sigint_while_waiting_for_a_batch_stops_the_workers():
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with leaves_nothing_behind() as watch:
        loader = DataLoader(Numbers(n=400, delay=0.05), batch_size=2, num_workers=2)
        timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
        served = 0
        try:
            with pytest.raises(KeyboardInterrupt):
                timer.start()
                for batch in loader:  # ~10 s of batches: SIGINT comes in the middle
                    del batch
                    served += 1
        finally:
            timer.cancel()
            timer.join()
        assert 0 < served < 100
        assert wait_until(watch.gone, 2)
        del loader


def test_sigint_while_the_workers_are_given_time_to_stop_still_stops_them():
    """Workers stuck in __getitem__ don't read "stop": the loader waits a grace period for
    them, then kills them. Ctrl-C in that wait must still kill them, and close their pipes
    and ring, before it propagates."""
    with leaves_nothing_behind() as watch:
        loader = DataLoader(Sleeper(30.0, n=64), batch_size=2, num_workers=2, timeout=60)
        it = iter(loader)
        assert wait_until(lambda: len(watch.workers()) == 2, 5)
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                it.close()
        finally:
            timer.cancel()
            timer.join()
        assert wait_until(watch.gone, 2)
        del loader, it


def test_a_stop_behind_a_half_sent_deal_still_stops_the_workers(monkeypatch):
    """A loop left while a deal larger than the pipe's buffer is half-sent: the workers
    must read the end of their pipe (the rest of the deal dropped) or get a broken pipe
    sending their large results, and exit by themselves: not wait to be killed after the
    grace period (made long here, so that a loaded machine can't fail the test)."""
    from pipeflow.data import loader as loader_module
    end_workers, alive_at_end = loader_module._end_workers, []
    monkeypatch.setattr(loader_module, "_STOP_GRACE", 20.0)

    def spy(conns, procs, ring, loader_ref):
        alive_at_end.append([proc.is_alive() for proc in procs])
        end_workers(conns, procs, ring, loader_ref)

    monkeypatch.setattr(loader_module, "_end_workers", spy)
    with leaves_nothing_behind() as watch:
        loader = DataLoader(Named(), batch_size=65536, sampler=Cycling(10 ** 6), num_workers=2,
                            timeout=60)
        for k, (x, _) in enumerate(loader):
            del x
            time.sleep(0.05)  # a training step: the workers' results queue up
            if k == 1:
                break
        assert alive_at_end == [[False, False]]
        assert wait_until(watch.gone, 2)
        del loader


def exit_slowly(worker_id):
    """A worker_init_fn that leaves a thread running: the worker's exit waits for it."""
    threading.Thread(target=time.sleep, args=(5,)).start()


def test_sigint_while_a_deleted_loader_stops_its_workers_leaks_nothing():
    """del loader stops persistent workers with a grace period; Ctrl-C in it (swallowed, as
    any exception in __del__) must not leave the ring the workers gave back open. (In a
    process of its own: pytest keeps such swallowed exceptions, and their frames, alive.)"""
    script = textwrap.dedent(f"""
        import gc, os, signal, sys, threading, time
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        from test_loader_failures import Numbers, exit_slowly, open_fds, child_pids
        from pipeflow.data import DataLoader
        before = open_fds()
        loader = DataLoader(Numbers(n=64), batch_size=4, num_workers=2, timeout=60,
                            persistent_workers=True, worker_init_fn=exit_slowly)
        assert len(list(loader)) == 16
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        start = time.monotonic()
        del loader
        gc.collect()
        print("seconds", round(time.monotonic() - start, 2))
        print("left", {{k: v for k, v in open_fds().items() if k not in before}},
              "children", len(child_pids()))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "left {} children 0" in done.stdout, \
        (done.stdout, done.stderr[-2000:])
    assert "KeyboardInterrupt" in done.stderr  # (reported as ignored in __del__)


def test_a_worker_killed_is_reported_where_sigpipe_kills(tmp_path):
    """A command-line program that restores SIGPIPE's default (for `| head`) must get the
    WorkerError, not die of writing "stop" to the dead worker's pipe."""
    script = textwrap.dedent(f"""
        import signal, sys
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        from test_loader_failures import Killer
        from pipeflow.data import DataLoader, WorkerError
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        try:
            list(DataLoader(Killer(at=9), batch_size=4, num_workers=2, timeout=60))
        except WorkerError as e:
            print("reported:", e)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "reported:" in done.stdout and "SIGKILL" in done.stdout, \
        (done.returncode, done.stdout, done.stderr[-2000:])


def test_sigint_to_the_workers_is_theirs_to_ignore():
    """Ctrl-C reaches the whole process group: the workers leave it to the main process."""
    with leaves_nothing_behind() as watch:
        loader = DataLoader(Numbers(n=60, delay=0.01), batch_size=2, num_workers=2)
        seen = []
        for i, batch in enumerate(loader):
            seen.append(int(batch[0, 0].item()))
            if i == 1:
                for pid in watch.workers():
                    os.kill(pid, signal.SIGINT)
            del batch
        assert seen == list(range(0, 60, 2))
        del loader


def test_persistent_workers_stop_with_their_loader():
    with leaves_nothing_behind() as watch:
        loader = DataLoader(Numbers(n=16), batch_size=4, num_workers=2, persistent_workers=True)
        assert len(drain(loader)) == 4
        pids = watch.workers()
        assert len(pids) == 2
        assert len(drain(loader)) == 4 and watch.workers() == pids  # the same workers
        del loader
        gc.collect()
        assert wait_until(watch.gone, 2)


def test_persistent_worker_killed_between_epochs_is_replaced():
    with leaves_nothing_behind() as watch:
        loader = DataLoader(Numbers(n=16), batch_size=4, num_workers=2, persistent_workers=True)
        first = [b[:, 0].tolist() for b in loader]
        old = watch.workers()
        assert len(old) == 2
        os.kill(old[0], signal.SIGKILL)
        assert wait_until(lambda: not running(old[0]), 2)
        assert [b[:, 0].tolist() for b in loader][-1] == first[-1]  # (loader.epoch is 1 now)
        assert wait_until(lambda: not running(old[1]), 2)  # the old pool's survivor too
        assert len(watch.workers()) == 2 and not set(watch.workers()) & set(old)
        del loader


CHILD = """
import os, sys, threading, time
import numpy as np
from pipeflow.data import DataLoader, Dataset

class Slow(Dataset):
    def __len__(self):
        return 10 ** 6
    def __getitem__(self, i):
        time.sleep(0.01 if i < 12 else 60)  # then stuck: no pipe read will notice
        return np.array([i, os.getpid()])  # which worker loaded it

if __name__ == "__main__":
    loader = DataLoader(Slow(), batch_size=4, num_workers=2,
                        multiprocessing_context=sys.argv[1])
    made = []
    if sys.argv[2] == "thread":  # workers forked by a thread that has ended since
        thread = threading.Thread(target=lambda: made.append(iter(loader)))
        thread.start()
        thread.join()
    else:
        made.append(iter(loader))
    pids = set()
    for n, batch in enumerate(made.pop()):
        pids.update(batch[:, 1].tolist())
        if n == 2:  # batches 0 and 2 from worker 0, 1 from worker 1
            print(" ".join(str(p) for p in sorted(pids)), flush=True)
"""


@pytest.mark.parametrize("context, forked_by", [("fork", "main"), ("spawn", "main"),
                                               ("fork", "thread")])
def test_main_process_sigkilled_takes_its_workers_with_it(tmp_path, context, forked_by):
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    before = shm_entries()
    child = subprocess.Popen([sys.executable, str(script), context, forked_by],
                             stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2 and all(running(p) for p in pids), line
        assert child_pids(child.pid) >= set(pids)
        child.kill()
        child.wait(5)
        assert wait_until(lambda: not any(running(p) for p in pids), 3), \
            f"workers outlived their SIGKILLed parent: {[p for p in pids if running(p)]}"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
    assert shm_entries() == before


def test_forkserver_workers_serve_batches():
    import multiprocessing.forkserver
    with leaves_nothing_behind(helpers=[multiprocessing.forkserver.ensure_running]):
        loader = DataLoader(Numbers(n=8), batch_size=2, num_workers=2,
                            multiprocessing_context="forkserver")
        for _ in range(2):  # the second epoch's workers are sent the first ones' slots
            assert [b[:, 0].tolist() for b in loader] == [[0, 1], [2, 3], [4, 5], [6, 7]]
        del loader


# --- 6. iterator churn ----------------------------------------------------------------------
def _take_one_batch(loader):
    it = iter(loader)
    assert next(it)[0, 0].item() == 0
    del it


def test_a_thousand_dropped_iterators_leak_nothing():
    loader = DataLoader(Numbers(n=64), batch_size=4, num_workers=1)
    for _ in range(5):  # warm up
        _take_one_batch(loader)
    gc.collect()
    watch = Watch()
    fds, threads, tasks, shm = fd_count(), threading.active_count(), task_count(), shm_entries()
    most_fds = most_kids = most_tasks = 0
    start = time.monotonic()
    for k in range(1000):
        _take_one_batch(loader)
        if k % 25 == 0:  # no gc.collect(): dropping the iterator alone must clean up
            most_fds, most_tasks = max(most_fds, fd_count()), max(most_tasks, task_count())
            most_kids = max(most_kids, len(child_pids() - watch.kids))
    elapsed = time.monotonic() - start
    assert most_kids == 0, "workers outlived their iterator"
    assert most_fds <= fds, f"open file descriptors grew from {fds} to {most_fds}"
    assert most_tasks <= tasks and threading.active_count() <= threads
    assert shm_entries() == shm
    gc.collect()
    assert watch.gone() and multiprocessing.active_children() == []
    assert fd_count() <= fds and task_count() <= tasks
    assert elapsed < 60, f"1000 iterators took {elapsed:.1f} s"
    del loader


def test_iterators_alive_together_each_stop_their_workers():
    with leaves_nothing_behind() as watch:
        loader = DataLoader(Numbers(n=64), batch_size=4, num_workers=2)
        first, second = iter(loader), iter(loader)
        assert next(first)[0, 0].item() == 0 and next(second)[0, 0].item() == 0
        assert len(watch.workers()) in (2, 4)  # a pool each, or the second replaced the first
        assert next(second)[0, 0].item() == 4
        del first, second
        gc.collect()
        assert wait_until(watch.gone, 2)
        del loader


# --- results do not depend on num_workers; slots are reused ---------------------------------
def _as_numpy(batch):
    if isinstance(batch, dict):
        return {k: _as_numpy(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return [_as_numpy(v) for v in batch]
    return np.array(batch.numpy(), copy=True)


def _assert_same(a, b):
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


@pytest.mark.parametrize("make", ["tensors", "augmented"])
def test_batches_do_not_depend_on_num_workers(make):
    if make == "tensors":
        n = 50
        ds = TensorDataset(pf.arange(n * 3).float().reshape(n, 3), pf.arange(n))
    else:
        ds = Augmented()
    runs = {}
    with leaves_nothing_behind():
        for workers in (0, 1, 2):
            loader = DataLoader(ds, batch_size=4, shuffle=True, num_workers=workers, seed=123)
            runs[workers] = [[_as_numpy(b) for b in loader] for _ in range(2)]  # two epochs
            del loader
    for workers in (1, 2):
        _assert_same(runs[0], runs[workers])
    epoch0, epoch1 = runs[0]
    first = lambda e: e[0]["index"] if make == "augmented" else e[0][1]  # noqa: E731
    assert not np.array_equal(first(epoch0), first(epoch1))  # shuffled anew each epoch
    if make == "augmented":  # the augmentation is random: per sample, and per epoch
        x = np.concatenate([b["x"] for b in epoch0])
        idx = np.concatenate([b["index"] for b in epoch0])
        noise = x - ds.base[idx]
        assert len(np.unique(noise.round(9), axis=0)) == len(idx)
        x1 = np.concatenate([b["x"] for b in epoch1])
        idx1 = np.concatenate([b["index"] for b in epoch1])
        order = np.argsort(idx1)
        assert not np.allclose(x1[order] - ds.base[idx1[order]], noise[np.argsort(idx)])


def live_pools():
    from pipeflow.data import loader as loader_module
    return [o for o in gc.get_objects()
            if isinstance(o, loader_module._WorkerPool) and not o.closed]


def test_slots_are_reused():
    with leaves_nothing_behind():
        loader = DataLoader(Numbers(n=800, width=256), batch_size=4, num_workers=2)
        it = iter(loader)
        next(it)
        [pool] = live_pools()
        fds, most_blocks, most_fds, count = fd_count(), 0, 0, 1
        for batch in it:
            count += 1
            most_blocks = max(most_blocks, len(pool.ring.blocks))
            most_fds = max(most_fds, fd_count())
        assert count == 200
        # prefetch_factor * num_workers in flight, as many received out of order and
        # waiting for an earlier batch, the batch in hand and the one before it
        assert most_blocks <= 2 * (2 * 2) + 2, most_blocks
        assert sum(pool.ring.slots) <= 2 * (2 * 2) + 2
        # a block in this process is its descriptor and its mapping's (mmap dups it)
        assert most_fds <= fds + 2 * most_blocks, (fds, most_fds)
        del loader, it, batch, pool


def test_workers_started_from_a_thread_outlive_that_thread():
    """The kernel's parent-death signal follows the thread that forked, not the process:
    workers forked by a thread that then ends must keep serving the iterator."""
    with leaves_nothing_behind():
        loader = DataLoader(Numbers(n=64, delay=0.01), batch_size=4, num_workers=2)
        started = []
        thread = threading.Thread(target=lambda lo: started.append(iter(lo)), args=(loader,))
        thread.start()
        thread.join()
        got = [b[0, 0].item() for b in started.pop()]
        assert got == [float(i) for i in range(0, 64, 4)]
        del loader


class EpochTagged(Dataset):
    """Sample i is (the epoch it was loaded for, i), slowly."""

    def __len__(self):
        return 16

    def __getitem__(self, i):
        time.sleep(0.05)
        return np.array([pf.data.worker.sample_context.key[1], i])


def test_ctrl_c_while_an_epoch_is_cancelled_leaves_no_stale_batches():
    """Ctrl-C while a persistent pool cancels an unfinished epoch: the pool is stopped, so
    a later epoch cannot take the old epoch's batches in flight for its own."""
    with leaves_nothing_behind():
        loader = DataLoader(EpochTagged(), batch_size=4, num_workers=1,
                            persistent_workers=True, timeout=60)
        it = iter(loader)
        next(it)

        def interrupt(*_):
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.05)  # while close() waits for the worker
            with pytest.raises(KeyboardInterrupt):
                it.close()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        loader.load_state_dict({"seed": loader.seed, "epoch": 1, "batches_served": 0})
        got = np.concatenate([b.numpy() for b in loader])
        assert got[:, 0].tolist() == [1] * 16 and sorted(got[:, 1].tolist()) == list(range(16))
        del loader, it


def test_a_default_socket_timeout_does_not_break_the_workers():
    """socket.setdefaulttimeout() made the fd passing of a new slot (send_handle and
    recv_handle make socket objects) turn the pipes non-blocking: a worker sending a result
    to a full pipe took "would block" for the main process having gone, and exited."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        with leaves_nothing_behind():
            loader = DataLoader(Named(), batch_size=4096, sampler=Cycling(10 ** 6),
                                num_workers=2, timeout=60)
            for k, (x, names) in enumerate(loader):  # results larger than a pipe
                assert x[0].item() == 4096 * k
                del x
                time.sleep(0.05)  # the workers' sends find their pipes full
                if k == 10:
                    break
            del loader
    finally:
        socket.setdefaulttimeout(previous)
