"""The one exception type of the data package: bad input, named precisely."""
from __future__ import annotations

# torch re-raises an error of a DataLoader worker in the main process as the same type, built from one
# message: "Caught DataError in DataLoader worker process N.\nOriginal Traceback ...\n...DataError: MSG"
_WORKER = "Caught DataError in DataLoader worker"
_TAIL = "DataError: "


class DataError(ValueError):
    """Bad input data: the message names the file (or key) and what was expected.

    The CLI prints it without a traceback and exits with status 2. Raised inside a DataLoader worker,
    it reaches the main process with the worker's message only (not the worker's traceback).
    """

    def __init__(self, *args):
        if len(args) == 1 and isinstance(args[0], str) and args[0].startswith(_WORKER) and _TAIL in args[0]:
            args = (args[0][args[0].rindex(_TAIL) + len(_TAIL):].strip(),)
        super().__init__(*args)
