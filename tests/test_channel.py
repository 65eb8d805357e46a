"""_nativepool._Channel: the cross-process message channel (np_chan) the
ProcessPool is being built on.  Private API: tested here through real
child processes (subprocess with pass_fds, and multiprocessing's spawn,
forkserver and fork, which pass the fds the way the pool will)."""
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import np, HANG_TIMEOUT, run_script

pytestmark = pytest.mark.nativepool_only

from nativepool._procworker import ChildFds  # noqa: E402 (fds as Process args)

Channel = np._nativepool._Channel
wait_any = np._nativepool._chan_wait_any

# The child: echo every message reversed; b"exit N" / b"kill" / b"segv" end it.
ECHO = r"""
import ctypes, os, signal, sys
from nativepool import _nativepool as m
ch = m._Channel.attach([int(x) for x in sys.argv[1:]])
while True:
    try:
        msg = ch.recv()
    except EOFError:
        sys.exit(0)
    if msg.startswith(b"exit "):
        os._exit(int(msg[5:]))
    if msg == b"kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if msg == b"segv":
        ctypes.string_at(0)
    ch.send(msg[::-1])
"""


def _env():
    env = dict(os.environ)
    pkg = os.path.dirname(os.path.dirname(np.__file__))
    env["PYTHONPATH"] = pkg + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Child:
    def __init__(self, use_pidfd=True, ring_size=0):
        self.ch = Channel.create(ring_size=ring_size, use_pidfd=use_pidfd)
        fds = self.ch.child_fds()
        self.proc = subprocess.Popen([sys.executable, "-c", ECHO] + [str(f) for f in fds],
                                     pass_fds=fds, env=_env())
        self.ch.child_started(self.proc.pid)

    def finish(self):
        if not self.ch.closed:
            self.ch.close()
        try:
            self.proc.wait(HANG_TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(params=[True, False], ids=["pidfd", "pipe-watch"])
def child(request):
    c = Child(use_pidfd=request.param)
    yield c
    c.finish()


def test_round_trips_in_order(child):
    for i in range(2000):
        msg = b"%d:" % i + b"x" * (i % 97)
        child.ch.send(msg)
        assert child.ch.recv(timeout=HANG_TIMEOUT) == msg[::-1]


def test_many_in_flight(child):
    msgs = [os.urandom(i % 300) for i in range(500)]
    for m in msgs:
        child.ch.send(m)
    assert [child.ch.recv(timeout=HANG_TIMEOUT) for _ in msgs] == [m[::-1] for m in msgs]


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 65536, 3 << 20])
def test_sizes_around_the_ring(size):
    c = Child(ring_size=4096)
    try:
        data = os.urandom(size)
        c.ch.send(data)
        assert c.ch.recv(timeout=HANG_TIMEOUT) == data[::-1]
    finally:
        c.finish()


def test_big_message_and_buffer_types(child):
    big = os.urandom(32 << 20)
    child.ch.send(memoryview(big))
    assert child.ch.recv(timeout=HANG_TIMEOUT) == big[::-1]
    child.ch.send(bytearray(b"abc"))
    assert child.ch.recv(timeout=HANG_TIMEOUT) == b"cba"
    with pytest.raises(TypeError):
        child.ch.send("text")


@pytest.mark.parametrize("how, code", [(b"exit 3", 3), (b"kill", -signal.SIGKILL),
                                       (b"segv", -signal.SIGSEGV)])
def test_child_death_is_eof_not_a_hang(child, how, code):
    child.ch.send(b"ping")
    assert child.ch.recv(timeout=HANG_TIMEOUT) == b"gnip"
    child.ch.send(how)
    t0 = time.monotonic()
    with pytest.raises(EOFError):
        child.ch.recv(timeout=HANG_TIMEOUT)
    assert time.monotonic() - t0 < HANG_TIMEOUT
    assert child.proc.wait(HANG_TIMEOUT) == code
    assert child.ch.peer_status() == "dead"


def test_timeout(child):
    with pytest.raises(TimeoutError):
        child.ch.recv(timeout=0.05)
    child.ch.send(b"ok")                       # still usable
    assert child.ch.recv(timeout=HANG_TIMEOUT) == b"ko"
    assert wait_any([child.ch], 0.05) == []    # nothing pending


def test_wait_any_over_several_children():
    kids = [Child() for _ in range(3)]
    try:
        assert wait_any([k.ch for k in kids], 0.05) == []
        kids[1].ch.send(b"one")
        deadline = time.monotonic() + HANG_TIMEOUT
        ready = []
        while not ready and time.monotonic() < deadline:
            ready = wait_any([k.ch for k in kids], 1.0)
        assert ready == [1]
        assert kids[1].ch.recv(timeout=HANG_TIMEOUT) == b"eno"
        kids[2].ch.send(b"exit 0")             # a death makes it readable too
        ready = []
        while not ready and time.monotonic() < deadline:
            ready = wait_any([k.ch for k in kids], 1.0)
        assert ready == [2]
        with pytest.raises(EOFError):
            kids[2].ch.recv(timeout=HANG_TIMEOUT)
    finally:
        for k in kids:
            k.finish()


def test_closed_channel_errors(child):
    child.ch.close()
    child.ch.close()                           # idempotent
    with pytest.raises(ValueError):
        child.ch.send(b"x")
    with pytest.raises(ValueError):
        child.ch.recv()
    assert child.proc.wait(HANG_TIMEOUT) == 0  # the child saw EOF and left


def test_attach_rejects_bad_fds():
    with pytest.raises(ValueError):
        Channel.attach([1, 2])
    r, w = os.pipe()
    try:
        with pytest.raises(OSError):
            Channel.attach([r] * 7)
    finally:
        os.close(r)
        os.close(w)


# ---- multiprocessing start methods: how the pool will pass the fds -----------

def _mp_echo(fdset):
    ch = Channel.attach(fdset.fds)
    for f in fdset.fds:
        os.close(f)
    while True:
        try:
            msg = ch.recv()
        except EOFError:
            return
        ch.send(msg + b"!")


@pytest.mark.parametrize("method", ["spawn", "forkserver", "fork"])
def test_multiprocessing_start_methods(method):
    ctx = multiprocessing.get_context(method)
    ch = Channel.create()
    p = ctx.Process(target=_mp_echo, args=(ChildFds(ch.child_fds()),))
    p.start()
    try:
        ch.child_started(p.pid)
        ch.send(b"hi")
        assert ch.recv(timeout=HANG_TIMEOUT) == b"hi!"
        ch.close()
        p.join(HANG_TIMEOUT)
        assert p.exitcode == 0
    finally:
        if p.is_alive():
            p.kill()
            p.join()


def test_parent_death_ends_the_child():
    # The parent dies (SIGKILL) while its child waits for a task: the child
    # sees EOF and exits instead of lingering.
    script = r"""
import os, subprocess, sys, time
from nativepool import _nativepool as m
ch = m._Channel.create()
fds = ch.child_fds()
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]] + [str(f) for f in fds],
                         pass_fds=fds)
ch.child_started(child.pid)
ch.send(b"ping"); assert ch.recv(timeout=30) == b"gnip"
print(child.pid, flush=True)
os.kill(os.getpid(), 9)
"""
    proc = subprocess.run([sys.executable, "-c", script, ECHO], env=_env(),
                          capture_output=True, text=True, timeout=HANG_TIMEOUT)
    pid = int(proc.stdout.split()[0])
    deadline = time.monotonic() + HANG_TIMEOUT
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the child outlived its parent")


def test_ctrl_c_interrupts_recv():
    proc = run_script(r"""
import os, signal, threading, time
from nativepool import _nativepool as m
ch = m._Channel.create()     # no child: recv waits forever
threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
t0 = time.monotonic()
try:
    ch.recv()
except KeyboardInterrupt:
    print("interrupted after %.1f s" % (time.monotonic() - t0))
""", timeout=HANG_TIMEOUT)
    assert "interrupted after" in proc.stdout, (proc.stdout, proc.stderr)
