"""The project's exception types: every failure a user can cause is one of these."""


class CaptchaError(Exception):
    """Base class: the CLI turns any of these into one clear line and a non-zero exit."""


class ImageError(CaptchaError, ValueError):
    """An input file is not an image we can read (empty, truncated, too large, not an image...)."""


class DataError(CaptchaError, ValueError):
    """A dataset folder does not follow the documented layout."""


class CheckpointError(CaptchaError, ValueError):
    """A checkpoint file is missing, corrupt, foreign, too new or does not match."""


class ConfigError(CaptchaError, ValueError):
    """An option or setting is invalid (a bad value, a device that is not there, a contradiction)."""
