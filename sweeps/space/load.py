"""Finding and loading a space file: ``load_space(name_or_path, overrides=())`` reads a file from
``search_spaces/`` (or any path), applies ``--set KEY=VALUE`` overrides and ``${ENV}`` values, and
validates everything into a :class:`~sweeps.space.SweepSpec`. Part of :mod:`sweeps.space`.
"""

from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import SpaceError
from .fields import show_value
from .spec import SweepSpec
from .validate import SpaceValidator
from .yaml import apply_override, interpolate_env, parse_overrides, parse_yaml

DEFAULT_SPACE = "dynamic"
"""The space ``tune.py`` runs when ``--space`` is not given (search_spaces/dynamic.yaml)."""

#: where ``<root>/search_spaces/`` is looked for, in order: the working directory, the checkout this module
#: runs from, and the installed package (a wheel ships the built-in spaces as ``sweeps/search_spaces/``)
SPACE_DIRS = (Path.cwd, lambda: Path(__file__).resolve().parents[2], lambda: Path(__file__).resolve().parents[1])


# --- finding and loading a space file ------------------------------------------------------------

def list_spaces() -> list[str]:
    """Names of the spaces found in ./search_spaces and the project's search_spaces/."""
    names = set()
    for root in SPACE_DIRS:
        folder = root() / "search_spaces"
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.y*ml"))
    return sorted(names)


def _resolve(name_or_path: str | os.PathLike) -> Path:
    text = str(name_or_path)
    given = Path(text).expanduser()
    if given.is_file():
        return given.resolve()
    bare = os.sep not in text and "/" not in text
    if bare:
        stem = text[:-5] if text.endswith(".yaml") else text[:-4] if text.endswith(".yml") else text
        for root in SPACE_DIRS:
            for suffix in (".yaml", ".yml"):
                candidate = root() / "search_spaces" / (stem + suffix)
                if candidate.is_file():
                    return candidate.resolve()
    known = list_spaces()
    close = difflib.get_close_matches(Path(text).stem, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise SpaceError(f"space: {text!r} not found{hint}; expected a YAML file path or one of "
                     f"{', '.join(known) or '(none found)'} from search_spaces/")


def load_space(name_or_path: str | os.PathLike = DEFAULT_SPACE, overrides: Sequence[str] = ()) -> SweepSpec:
    """Read, override and validate a search space. Raises SpaceError/BudgetError (one line)."""
    path = _resolve(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SpaceError(f"space: {str(path)!r} cannot be read ({err.__class__.__name__}); "
                         f"expected a readable UTF-8 YAML file") from None
    raw = parse_yaml(text, str(path))
    return space_from_dict(raw, overrides, path=str(path), raw_text=text, default_name=path.stem)


def apply_overrides(spec: SweepSpec, overrides: Sequence[str]) -> SweepSpec:
    """A new spec: ``spec``'s source with ``overrides`` (``["trials=4", "workload.data_root=/x"]``)
    applied after its own, validated like the file."""
    return space_from_dict(spec.raw, tuple(spec.overrides) + tuple(overrides), path=spec.path,
                           raw_text=spec.raw_text, default_name=spec.name)


def space_from_dict(raw: Any, overrides: Sequence[str] = (), *, path: str | None = None,
                    raw_text: str = "", default_name: str = "sweep") -> SweepSpec:
    """Validate a parsed mapping (plus overrides) into a SweepSpec."""
    if not isinstance(raw, Mapping):
        raise SpaceError(f"space: {show_value(raw)} is not a mapping; expected a YAML mapping with "
                         f"workload, parameters, objectives, ... (see docs/search-spaces.md)")
    data = copy.deepcopy(dict(raw))
    for item in parse_overrides(overrides):
        data = apply_override(data, *item)
    data = interpolate_env(data, "")
    spec = SpaceValidator(data, default_name, space_dir=Path(path).parent if path else None).run()
    spec.path, spec.raw_text, spec.raw, spec.overrides = path, raw_text, copy.deepcopy(dict(raw)), tuple(overrides)
    return spec
