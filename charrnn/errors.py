"""charrnn's exceptions: one base, so that a caller catches them all at once.

    CharrnnError            anything charrnn refuses; str() is one line saying what
    |                       and what to do, the line the `charrnn` command prints
    +-- UsageError          a bad argument or option value (also a ValueError);
    |                       the command exits with status 2
    +-- DataError           bad or missing data: a corpus, a checkpoint, a run
    |   |                   folder, a file that cannot be written; status 1
    |   +-- checkpoint.CheckpointError, data.CorpusError, export.ExportError
    +-- DivergedError       training met a non-finite loss or gradient; status 3

`exit_code` on each class is the status the command line exits with; cli.main
maps the base class to it in one place.
"""


class CharrnnError(Exception):
    """Base of every error charrnn raises on purpose."""
    exit_code = 1


class UsageError(CharrnnError, ValueError):
    """A bad argument or option value. `param` names it as the caller spelled it
    (the API's keyword, e.g. "top_p"), or is None."""
    exit_code = 2

    def __init__(self, message, param=None):
        super().__init__(message)
        self.message, self.param = message, param

    def __str__(self):
        return f"{self.param}: {self.message}" if self.param else self.message


class DataError(CharrnnError):
    """Bad or missing data: a corpus, a checkpoint, a run folder, a file."""
    exit_code = 1


class DivergedError(CharrnnError):
    """Training met a non-finite loss or gradient and stopped without saving that
    step; the run folder keeps its last good checkpoints."""
    exit_code = 3
