"""The executable model of Linux process memory: Machine, Process, Image."""

from .events import Event, EventLog
from .fs.file import File
from .kernel.exec import Image
from .kernel.process import Process, ProcessBlocked
from .machine import Machine

__all__ = ["Event", "EventLog", "File", "Image", "Machine", "Process", "ProcessBlocked"]
