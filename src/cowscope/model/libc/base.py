"""The allocator interface: a malloc whose every header and bin lives in simulated memory.

An allocator is bound to one process (its *host*). All of its state must be kept in the host's
simulated memory (heap chunks, libc data, TLS) so that fork() copies it by copy-on-write exactly
as Linux does; a Python-side cache is allowed only if it is an exact mirror of those bytes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol

from ...errors import EINVAL, SyscallError


class AllocatorHost(Protocol):
    """What an allocator may do to its process (cowscope.model.Process implements this)."""

    pid: int
    libc_data: int  # start of libc's rw data area (main_arena, mp_ live here)
    libc_data_size: int
    tls: int        # start of the thread's TLS block (tcache pointer, errno live here)

    def read(self, addr: int, n: int) -> bytes: ...
    def write(self, addr: int, data: bytes) -> None: ...
    def read_u64(self, addr: int) -> int: ...
    def write_u64(self, addr: int, value: int) -> None: ...
    def fill(self, addr: int, length: int, byte: int) -> None: ...
    def sbrk(self, delta: int) -> int: ...            # old break; raises SyscallError(ENOMEM)
    def brk(self, new_end: int | None = None) -> int: ...
    def mmap(self, length: int, prot: str = "rw", shared: bool = False, file=None, offset: int = 0,
             addr: int | None = None, fixed: bool = False) -> int: ...
    def munmap(self, addr: int, length: int) -> None: ...
    def madvise(self, addr: int, length: int, advice: str) -> None: ...
    def mremap(self, addr: int, old_len: int, new_len: int, may_move: bool = True) -> int: ...
    def abort(self, message: str) -> None: ...        # print to stderr, die of SIGABRT (raises Aborted)


class Allocator(ABC):
    """malloc/free/calloc/realloc on a host process; subclasses model one real allocator."""

    name = "allocator"

    def __init__(self, host: AllocatorHost) -> None:
        self.host = host

    @abstractmethod
    def malloc(self, size: int) -> int:
        """Return the user pointer, or 0 when memory is exhausted (errno ENOMEM)."""

    @abstractmethod
    def free(self, ptr: int) -> None:
        """Release ptr (0 is a no-op); corruption aborts the host with the allocator's message."""

    @abstractmethod
    def malloc_usable_size(self, ptr: int) -> int: ...

    def calloc(self, n: int, size: int) -> int:
        total = n * size
        if n and total // n != size or total >= 1 << 63:
            return 0
        ptr = self.malloc(total)
        if ptr:
            self.host.fill(ptr, total, 0)
        return ptr

    def realloc(self, ptr: int, size: int) -> int:
        if ptr == 0:
            return self.malloc(size)
        if size == 0:
            self.free(ptr)
            return 0
        old = self.malloc_usable_size(ptr)
        new = self.malloc(size)
        if new:
            self.host.write(new, self.host.read(ptr, min(old, size)))
            self.free(ptr)
        return new

    def memalign(self, alignment: int, size: int) -> int:
        """Aligned allocation; allocators override this."""
        raise SyscallError(EINVAL, "memalign", f"{self.name} has no memalign")

    @staticmethod
    def static_libc_data(libc_data: int) -> list[tuple[int, bytes]]:
        """(address, bytes) the allocator's initialised libc .data holds once ld.so has relocated it."""
        return []

    def fork_child(self, child: AllocatorHost) -> Allocator:
        """The allocator of a fork child: same state (it is in memory), bound to the child."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.host = child
        return clone


ALLOCATORS: dict[str, type[Allocator]] = {}


def register(cls: type[Allocator]) -> type[Allocator]:
    """Class decorator: make an allocator selectable by name (Machine(allocator=NAME))."""
    ALLOCATORS[cls.name] = cls
    return cls
