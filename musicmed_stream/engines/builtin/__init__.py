"""The built-in engine: a CPU composer and band-limited synthesizer that needs no downloads."""

from musicmed_stream.engines.builtin.engine import BuiltinEngine

__all__ = ["BuiltinEngine"]
