"""User-input errors of the sweep layer.

Every error a user can cause with a search space, a ``--set`` override or a budget is a
:class:`UserInputError`: its message is one line naming the key, the value and what was expected.
The CLI prints ``error: <message>`` and exits with status 2 for any of them.
"""

from __future__ import annotations

__all__ = ["UserInputError", "SpaceError", "BudgetError", "RunError"]


class UserInputError(ValueError):
    """Bad user input; ``str(err)`` is a single line (newlines in the message are folded)."""

    def __init__(self, message: object) -> None:
        super().__init__(" ".join(str(message).split()))


class SpaceError(UserInputError):
    """A malformed search space file or override (names the dotted key)."""


class BudgetError(UserInputError):
    """A malformed or unknown accuracy budget (names the expression)."""


class RunError(RuntimeError):
    """A sweep that could not go on for a reason other than the input (a crashed baseline, a full disk
    found late): the CLI prints ``error: <message>`` (one line) and exits with status 1."""

    def __init__(self, message: object) -> None:
        super().__init__(" ".join(str(message).split()))
