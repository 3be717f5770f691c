"""Allocators whose metadata lives in simulated memory."""

from .base import ALLOCATORS, Allocator, AllocatorHost, register

__all__ = ["ALLOCATORS", "Allocator", "AllocatorHost", "register"]
