"""Messages from the main process to its workers, sent without ever blocking it."""
import os
import select
import socket
import struct
from multiprocessing.reduction import ForkingPickler


class Outbox:
    """Pickled messages for the workers' pipes (multiprocessing Connections), written as far
    as each pipe has room; the rest waits here and goes out once poll() says there is room.

    A worker reads its pipe only between batches. A plain send of a message larger than the
    pipe's buffer (a deal of many big batches' indices) would block the main process while
    the worker is busy or hung (no timeout= could fire), or deadlock while that worker waits
    to send the main process a large result. `poller` asks for POLLOUT on a pipe exactly
    while bytes wait for it."""

    def __init__(self, poller):
        self.poller = poller
        self.waiting = {}  # pipe's descriptor -> the bytes not written yet

    def post(self, conn, message):
        """Queue `message` for `conn` (read there by conn.recv()) and write what fits.
        Raises OSError if the other end is gone."""
        data = ForkingPickler.dumps(message)
        fd = conn.fileno()
        self.waiting.setdefault(fd, bytearray()).extend(_header(len(data)) + data)
        self.flush(fd)

    def post_last(self, conn, message):
        """Post `message` as the last one for `conn` and shut the pipe both ways: the worker
        reads what fits now, then its end of file, whatever still waits here (dropped), and
        a worker blocked sending a large result gets a broken pipe. (Closing this end would
        not do: a forked worker holds a copy of it.)"""
        fd = conn.fileno()
        try:
            self.post(conn, message)
        finally:
            self.waiting.pop(fd, None)
            try:
                with socket.socket(fileno=os.dup(fd)) as sock:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # the worker is gone
                pass

    def flush(self, fd):
        """Write as much of what waits for `fd` as its pipe takes now."""
        waiting = self.waiting.get(fd)
        if waiting:
            sock = socket.socket(fileno=fd)  # (a view of the pipe's descriptor, not a copy)
            sock.settimeout(None)  # (else, under socket.setdefaulttimeout(), send() waits)
            try:  # MSG_NOSIGNAL: a worker that is gone is an error, not the SIGPIPE that a
                while waiting:  # program restoring its default handler would die of
                    del waiting[:sock.send(waiting, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)]
            except BlockingIOError:
                pass
            finally:
                sock.detach()
        self.poller.modify(fd, select.POLLIN | (select.POLLOUT if waiting else 0))


def _header(size):
    """multiprocessing.connection's framing (Connection._send_bytes): the size as 4 bytes,
    big-endian, or -1 then 8 bytes past 2 GiB."""
    return struct.pack("!iQ", -1, size) if size > 0x7fffffff else struct.pack("!i", size)
