"""The converters' error (kept free of torch imports so that ``protoseg --help`` stays fast)."""


class ConvertError(ValueError):
    """A source file that does not have the expected format; the message names the file and key."""
