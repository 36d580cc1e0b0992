"""Errors caused by the user's input (config, files, environment), as opposed to bugs.

The CLI prints these as one line, `error: <what> (<where>)`, and exits with status 2; anything
else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input: a params key, an input file, a missing package or an unreachable source."""
