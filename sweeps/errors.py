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


def text_value_problem(text: str) -> str | None:
    """Why a flag's text value is refused, or None: empty or blank (it would silently mean the default),
    or not on one line (a newline would end up in a folder, an MLflow experiment or a store URI)."""
    if not text.strip():
        return f"{text!r} is empty; expected a non-empty value (or leave the option out for the default)"
    if "\n" in text or "\r" in text or "\x00" in text:
        return f"{text!r} contains a line break or NUL; expected a value on one line"
    return None
