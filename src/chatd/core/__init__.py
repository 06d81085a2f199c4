"""Core contracts shared by the store, the tools and the worker (no I/O here)."""
