"""chatd: durable LLM agent chats.

The agent loop (`chatd.loop`) is usable on its own as a library; the service layers
(store, worker, api) build on it. Importing `chatd` imports nothing heavy.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
