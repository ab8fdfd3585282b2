"""Shared memory for the batch ring: blocks backed by files in /dev/shm that are unlinked
the moment they are created. Only open file descriptors (passed between processes over
their pipes) refer to a block, so the kernel frees it with the last process holding it:
nothing can be left behind in /dev/shm, even when a process is SIGKILLed."""
import errno
import math
import mmap
import os
import secrets

import numpy as np

SHM_DIR = os.environ.get("PIPEFLOW_SHM_DIR", "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp")
ALIGN = 64  # arrays in a slot start on cache-line (and SIMD) boundaries


class SharedMemoryError(RuntimeError):
    """The ring does not fit in shared memory."""


def send_fd(conn, fd, pid):
    """multiprocessing's send_handle, leaving the pipe blocking (see receive_fd)."""
    from multiprocessing.reduction import send_handle
    try:
        send_handle(conn, fd, pid)
    finally:
        os.set_blocking(conn.fileno(), True)


def receive_fd(conn):
    """multiprocessing's recv_handle, leaving the pipe blocking: both make a socket object
    on a copy of the pipe's descriptor, which under socket.setdefaulttimeout() turns the
    open file (shared by the copies) non-blocking, under the Connection's own recv."""
    from multiprocessing.reduction import recv_handle
    try:
        return recv_handle(conn)
    finally:
        os.set_blocking(conn.fileno(), True)


def free_bytes():
    st = os.statvfs(SHM_DIR)
    return st.f_bavail * st.f_frsize


def check_capacity(total, what):
    """A clear error before a ring is allocated, instead of a bus error mid-epoch."""
    free = free_bytes()
    if total > free:
        raise SharedMemoryError(
            f"{what} needs {total / 2**20:.1f} MiB of shared memory but {SHM_DIR} has only "
            f"{free / 2**20:.1f} MiB free: enlarge it (e.g. docker run --shm-size=8g) or "
            "lower batch_size, prefetch_factor or num_workers")


def create_fd(size):
    """A file descriptor of `size` bytes of shared memory, reserved now (posix_fallocate) so
    that running out shows here and not as SIGBUS when the memory is first touched."""
    path = os.path.join(SHM_DIR, f"pipeflow-{os.getpid()}-{secrets.token_hex(8)}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.unlink(path)
    try:
        if size:
            os.posix_fallocate(fd, 0, size)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.ENOSPC, errno.ENOMEM, errno.EFBIG):
            raise SharedMemoryError(
                f"could not reserve {size / 2**20:.1f} MiB of shared memory in {SHM_DIR} "
                f"({os.strerror(e.errno)}): enlarge it (e.g. docker run --shm-size=8g) or lower "
                "batch_size, prefetch_factor or num_workers") from None
        raise
    return fd


class Block:
    """A mapped shared-memory block; owns its file descriptor."""

    __slots__ = ("fd", "size", "mmap", "pinned_for", "__weakref__")

    def __init__(self, fd, size):
        self.fd, self.size, self.pinned_for = fd, size, None
        self.mmap = mmap.mmap(fd, max(size, 1))

    def pin(self, device_index):
        """Register the block as page-locked memory (once), for copies to `device_index`."""
        if self.pinned_for is None and self.size:
            from .. import backend
            backend.register_host_memory(self.array().ctypes.data, self.size, device_index)
            self.pinned_for = device_index

    def array(self):
        """The whole block as a uint8 array (a new object each call, viewing the block)."""
        return np.frombuffer(self.mmap, np.uint8, self.size)

    def close(self):
        try:
            if self.pinned_for is not None:
                from .. import backend
                device, self.pinned_for = self.pinned_for, None
                backend.unregister_host_memory(self.array().ctypes.data, device)
        finally:
            if self.fd is not None:
                try:
                    self.mmap.close()
                except BufferError:  # arrays still view it: the mapping goes with them
                    pass
                os.close(self.fd)
                self.fd = None


def layout(stack_specs):
    """(offsets, total bytes) for arrays of the given (shape, dtype), each aligned."""
    offsets, total = [], 0
    for shape, dtype in stack_specs:
        offsets.append(total)
        total += -(-(math.prod(shape) * dtype.itemsize) // ALIGN) * ALIGN
    return offsets, total


def views(buffer, specs, offsets):
    """Arrays of the given (shape, dtype) at `offsets` in a uint8 `buffer`."""
    return [buffer[offset:offset + math.prod(shape) * dtype.itemsize].view(dtype).reshape(shape)
            for (shape, dtype), offset in zip(specs, offsets)]


class Credits:
    """A counting semaphore that is a file descriptor (a Linux eventfd in semaphore mode):
    passed between processes like the blocks, waitable together with a pipe, and gone with
    the processes that hold it (no named semaphore left in /dev/shm)."""

    __slots__ = ("fd",)

    def __init__(self, fd=None, count=0):
        self.fd = os.eventfd(count, os.EFD_SEMAPHORE | os.EFD_NONBLOCK | os.EFD_CLOEXEC) \
            if fd is None else fd

    def release(self):
        if self.fd is not None:  # (a batch may outlive its workers)
            os.eventfd_write(self.fd, 1)

    def try_acquire(self):
        try:
            os.eventfd_read(self.fd)
            return True
        except BlockingIOError:
            return False

    def fileno(self):
        return self.fd

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Inherited:
    """A file descriptor handed to a worker process as it starts: a forked child has it
    already, under the same number; for spawn and forkserver multiprocessing duplicates it
    into the child (its DupFd, the way it passes a Connection)."""

    __slots__ = ("fd",)

    def __init__(self, fd):
        self.fd = fd

    def __reduce__(self):
        from multiprocessing.reduction import DupFd
        return _inherited, (DupFd(self.fd),)


def _inherited(dup):
    return Inherited(dup.detach())
