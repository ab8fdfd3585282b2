"""The loader's Outbox: messages to a worker's pipe written as far as the pipe takes them,
the rest when poll() says there is room, read whole by multiprocessing's Connection.recv."""
import multiprocessing
import os
import select
import socket
import sys
import threading

import numpy as np
import pytest

from pipeflow.data.outbox import Outbox

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="a duplex Pipe is a Unix socketpair")


def pipe_and_outbox():
    ours, theirs = multiprocessing.Pipe(duplex=True)
    poller = select.poll()
    poller.register(ours.fileno(), select.POLLIN)
    return ours, theirs, poller, Outbox(poller)


def test_a_message_larger_than_the_pipe_goes_out_as_the_reader_reads():
    ours, theirs, poller, outbox = pipe_and_outbox()
    big = ("tasks", np.arange(2 ** 20, dtype=np.int64), True)  # 8 MiB: many pipes' worth
    outbox.post(ours, big)
    outbox.post(ours, ("cancel",))
    assert outbox.waiting[ours.fileno()], "all of it fit: the test needs a larger message"
    received = []
    reader = threading.Thread(target=lambda: received.extend([theirs.recv(), theirs.recv()]))
    reader.start()
    while outbox.waiting[ours.fileno()]:
        for fd, event in poller.poll(10_000):
            assert event & select.POLLOUT
            outbox.flush(fd)
    reader.join(10)
    assert received[0][0] == "tasks" and np.array_equal(received[0][1], big[1])
    assert received[1] == ("cancel",)
    assert poller.poll(0) == []  # no POLLOUT asked for once nothing waits


def test_the_pipe_stays_blocking_under_a_default_socket_timeout():
    """Connection.recv on the main process's end needs a blocking descriptor."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        ours, theirs, _, outbox = pipe_and_outbox()
        outbox.post(ours, ("stop",))
        assert os.get_blocking(ours.fileno())
        assert theirs.recv() == ("stop",)
    finally:
        socket.setdefaulttimeout(previous)


def test_post_last_ends_the_pipe_after_what_was_sent():
    ours, theirs, _, outbox = pipe_and_outbox()
    outbox.post(ours, ("tasks", [], False))
    outbox.post_last(ours, ("stop",))
    assert theirs.recv() == ("tasks", [], False) and theirs.recv() == ("stop",)
    with pytest.raises(EOFError):
        theirs.recv()


def test_writing_to_a_pipe_whose_reader_is_gone_is_an_error_not_sigpipe():
    ours, theirs, _, outbox = pipe_and_outbox()
    theirs.close()
    with pytest.raises(OSError):
        outbox.post(ours, ("tasks", list(range(10)), True))
