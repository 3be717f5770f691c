"""The wire protocol between the controller and an agent (agent.h: struct cmd, struct reply).

A command is a fixed header (op, payload length, six u64 arguments) followed by its payload; a
reply is (tag, errno, ret, aux), a T_DATA reply followed by `ret` bytes, a T_FD reply carrying a
socket by SCM_RIGHTS (the new process of a fork or vfork). One socket per agent process.
"""

from __future__ import annotations

import array
import socket
import struct

from ..observe.arguments import PROT_BITS

# Command and reply layouts (agent.h: struct cmd, struct reply, enum op, enum tag).
CMD = struct.Struct("<II6Q")
REPLY = struct.Struct("<IiqQ")
(OP_PING, OP_MMAP, OP_MUNMAP, OP_MPROTECT, OP_MADVISE, OP_MREMAP, OP_BRK, OP_SBRK, OP_READ, OP_WRITE,
 OP_FILL, OP_TOUCH, OP_MALLOC, OP_FREE, OP_CALLOC, OP_REALLOC, OP_MEMALIGN, OP_USABLE, OP_FORK,
 OP_VFORK, OP_EXEC, OP_EXIT, OP_WAIT, OP_SETNAME, OP_MLOCK, OP_MUNLOCK, OP_INFO, OP_POSIX_MEMALIGN,
 OP_ALIGNED_ALLOC, OP_MALLOPT, OP_MALLOC_TRIM, OP_MALLINFO2, OP_THREAD_CREATE, OP_THREAD_EXIT,
 OP_THREAD_JOIN, OP_MALLOC_STATS) = range(1, 37)
#: A command's op carries the thread slot that runs it in its high 16 bits (0: the first thread).
SLOT_SHIFT = 16
T_RESULT, T_DATA, T_SEGV, T_ABRT, T_HELLO, T_FD = range(1, 7)
MMAP_SHARED, MMAP_FIXED, MMAP_POPULATE, MMAP_NOHUGE = 1, 2, 4, 8

#: si_code of a SIGSEGV -> its reason, worded as the model's reasons end (the model says more).
SEGV_REASONS = {1: "no mapping (SEGV_MAPERR)", 2: "access against the mapping's protection (SEGV_ACCERR)"}


def prot_bits(prot: str | int) -> int:
    """Letters checked by observe.arguments ("rw", "r", "" ...), or raw PROT_* bits, -> PROT_* bits."""
    if isinstance(prot, int):
        return prot
    return sum(PROT_BITS[ch] for ch in prot)


class Conn:
    """One agent's socket: send a command, receive framed replies."""

    #: Seconds to wait for an agent's reply before giving up (an agent never takes this long).
    TIMEOUT = 300.0

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(self.TIMEOUT)

    def send(self, op: int, *args: int, payload: bytes = b"") -> None:
        """Send one command with its payload."""
        vals = [int(a) & 0xFFFFFFFFFFFFFFFF for a in args] + [0] * (6 - len(args))
        self.sock.sendall(CMD.pack(op, len(payload), *vals) + payload)

    def recv_exact(self, n: int) -> bytes | None:
        """Exactly n bytes, or None at EOF."""
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def recv(self) -> tuple[int, int, int, int] | None:
        """(tag, err, ret, aux) or None at EOF."""
        data = self.recv_exact(REPLY.size)
        return None if data is None else REPLY.unpack(data)

    def recv_fd(self) -> tuple[tuple[int, int, int, int] | None, int | None, bool]:
        """A reply that may carry an SCM_RIGHTS descriptor (T_FD): (the reply, None at EOF; the
        descriptor or None; True when the kernel dropped descriptors because this process is at
        its RLIMIT_NOFILE: MSG_CTRUNC). A failed fork/vfork is a T_RESULT reply with its errno."""
        fds = array.array("i")
        msg, anc, flags, _addr = self.sock.recvmsg(REPLY.size, socket.CMSG_LEN(fds.itemsize))
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        if 0 < len(msg) < REPLY.size:
            msg += self.recv_exact(REPLY.size - len(msg)) or b""
        rep = REPLY.unpack(msg) if len(msg) == REPLY.size else None
        return rep, (fds[0] if fds else None), bool(flags & socket.MSG_CTRUNC)

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()
