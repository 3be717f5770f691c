"""cowscope: what fork() does to a process's memory on Linux — model, kernel, inspector."""

__version__ = "0.1.0"
