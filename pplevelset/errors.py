"""Exceptions that mean "the user asked for something that cannot be done".

The CLI turns these into one line on stderr and exit status 2; anything else is a bug (exit 1).
"""


class UserInputError(ValueError):
    """Bad input: a malformed target, an unknown world, an impossible setting."""


class CheckpointError(UserInputError):
    """A trained network is missing, corrupted, or does not match its model card."""
