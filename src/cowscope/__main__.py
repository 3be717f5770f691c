"""`python -m cowscope` runs the CLI."""

from .cli.main import entry

entry()
