"""Processes: fork, exec, exit, wait, user access."""
