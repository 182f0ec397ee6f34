"""The one exception type of the data package: bad input, named precisely."""
from __future__ import annotations


class DataError(ValueError):
    """Bad input data: the message names the file (or key) and what was expected.

    The CLI prints it without a traceback and exits with status 2.
    """
