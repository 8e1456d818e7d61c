"""The trial config under its older module name: every name is :mod:`disparse_core.config`'s."""

from .config import *  # noqa: F401,F403
from .config import __all__  # noqa: F401
