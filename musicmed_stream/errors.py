"""Errors a user can act on. The CLI prints them as one line, without a traceback."""


class MusicMedError(Exception):
    """Base class of every error that is the user's input, files or environment, not a bug."""


class UnknownEmotionError(MusicMedError, ValueError):
    """An emotion name, mood tag or coordinate string that cannot be resolved."""


class ConfigError(MusicMedError, ValueError):
    """An invalid configuration value; the message names the key."""


class WeightsNotFoundError(MusicMedError, FileNotFoundError):
    """Model weights that are not on this machine; the message says how to get them."""


class AudioError(MusicMedError):
    """Audio that cannot be read, decoded or written."""


class GenerationCancelled(MusicMedError):
    """A clip was abandoned because its ``cancel`` event was set (e.g. by a re-target)."""
