"""Reading a space's text: strict YAML, ``--set KEY=VALUE`` overrides, ``${ENV}`` interpolation, dotted keys.

Private to :mod:`sweeps.space` (which re-exports :func:`parse_overrides`). Everything here works on the
parsed mapping before validation; problems are one-line :class:`~sweeps.errors.SpaceError` (or
BudgetError for a malformed budget).
"""

from __future__ import annotations

import os
import re
from typing import Any, Hashable, Mapping, Sequence

import yaml

from ..errors import BudgetError, SpaceError
from .fields import SUB_FIELDS, bad_value, show_value


# --- YAML reading ----------------------------------------------------------------------------------

class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (plain safe_load keeps the last one silently)."""


def _mapping_no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, (list, dict, set)) or not isinstance(key, Hashable):
            kind = "mapping" if isinstance(key, dict) else "list" if isinstance(key, list) else "value"
            start, end = key_node.start_mark, key_node.end_mark
            text = (start.buffer or "")[start.index:end.index].strip() if start and end else ""
            text = " " + show_value(text) if text and "\n" not in text else ""
            raise yaml.constructor.ConstructorError(
                None, None, f"a {kind}{text} is used as a mapping key; mapping keys must be "
                f"strings or other scalars", key_node.start_mark)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_no_duplicates)


def _int_within_limits(loader: _StrictLoader, node: yaml.ScalarNode) -> int:
    """YAML ints; one with more digits than Python converts (ValueError) is a YAML error, not a crash."""
    try:
        return yaml.SafeLoader.construct_yaml_int(loader, node)
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, f"an integer with too many digits ({len(str(node.value))})", node.start_mark) from None


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _int_within_limits)


def parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise SpaceError(f"{where}: invalid YAML{at}: {problem}; expected a YAML mapping "
                         f"(see docs/search-spaces.md)") from None


# --- overrides and ${ENV} interpolation -----------------------------------------------------------------

def parse_overrides(overrides: Sequence[str]) -> list[tuple[str, Any, str]]:
    """``"a.b=VALUE"`` → ``(key, yaml value, original text)``; SpaceError if malformed."""
    if isinstance(overrides, str):
        overrides = [overrides]
    out = []
    for text in overrides:
        key, sep, value = str(text).partition("=")
        key = key.strip()
        if not sep or not key or not re.match(r"^[A-Za-z_][\w\-]*(\.[\w\-]+)*$", key):
            raise SpaceError(f"--set {str(text)!r}: cannot parse; expected KEY=VALUE with a dotted "
                             f"KEY, e.g. trials=4 or workload.data_root=/data/nyuv2")
        out.append((key, _override_value(value, str(text)), str(text)))
    return out


def _override_value(value: str, text: str) -> Any:
    """YAML for ``4``, ``[a, b]``, ``{value: 1}``; plain text for what YAML rejects (``>=20``)."""
    if not value.strip():
        return None
    try:
        return yaml.load(value, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError:
        if value.lstrip().startswith(("{", "[")):
            return parse_yaml(value, f"--set {text!r}")     # raises with the position
        return value.strip()


def _budget_dict(budgets: Any) -> Any:
    if not isinstance(budgets, list):
        return budgets
    out = {}
    for item in budgets:
        m = re.match(r"^\s*([A-Za-z_][\w.\-]*?)\s*(>=|<=|=)\s*(.*)$", str(item))
        if not m:
            raise BudgetError(f"budget {item!r}: cannot parse; expected METRIC=-2%, METRIC>=X or METRIC<=X")
        out[m[1]] = m[3] if m[2] == "=" else m[2] + m[3]
    return out


def apply_override(data: dict, key: str, value: Any, text: str) -> dict:
    head, _, rest = key.partition(".")
    if not rest:
        data[head] = value
        return data
    section = data.get(head)
    if head == "budgets":
        section = _budget_dict(section) or {}
        if value is None:
            _check_removable(section, rest, "budgets", text)
            section.pop(rest, None)
        else:
            section[rest] = value
        data[head] = section
        return data
    if head == "parameters":
        section = section if isinstance(section, dict) else {}
        names = sorted((n for n in section if rest == n or rest.startswith(n + ".")), key=len)
        if names and names[-1] != rest:
            name, sub = names[-1], rest[len(names[-1]) + 1:]
            entry = section[name] if isinstance(section[name], dict) else {}
            entry[sub] = value
            section[name] = entry
        else:
            if value is None:
                _check_removable(section, rest, "parameters", text)
            # shorthand: a list is a categorical, a scalar a fixed value
            section[rest] = (value if isinstance(value, dict) or value is None
                             else {"values": value} if isinstance(value, list) else {"value": value})
            if value is None:
                section.pop(rest)
        data[head] = section
        return data
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise bad_value(head, section, f"cannot take --set {text!r}", "a mapping")
    if head == "workload":
        section = expand_dotted(section, "workload")
    node = section
    parts = rest.split(".")
    if value is None and head == "workload":
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                _check_removable(node, part, ".".join(["workload", *parts[:i]]), text)
            node = node[part]
        _check_removable(node, parts[-1], ".".join(["workload", *parts[:-1]]), text)
        node.pop(parts[-1])                # null removes a fixed key (the core's default applies)
        data[head] = section
        return data
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value
    data[head] = section
    return data


def _check_removable(section: Any, key: str, where: str, text: str) -> None:
    """``--set KEY=null`` removes a key the space sets; naming one it does not set is a mistake (a typo
    would otherwise remove nothing and say nothing)."""
    if isinstance(section, dict) and key in section:
        return
    present = ", ".join(sorted(map(str, section))) if isinstance(section, dict) and section else "none"
    raise SpaceError(f"--set {text!r}: {where}.{key} is not set in the space, so null has nothing to "
                     f"remove; {where} sets: {present}")


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate_env(value: Any, key: str) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in strings; an unset VAR without default is an error."""
    if isinstance(value, dict):
        return {k: interpolate_env(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate_env(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def sub(m: re.Match) -> str:
        env = os.environ.get(m[1])
        if env is not None and env != "":
            return env
        if m[2] is not None:
            return m[2]
        raise SpaceError(f"{key}: {value!r} uses ${{{m[1]}}}, which is not set; expected the "
                         f"environment variable {m[1]} set or --set {key}=VALUE")
    return _ENV.sub(sub, value)


def expand_dotted(section: Mapping, where: str) -> dict:
    """``{"dynamic.alpha0": 0.3}`` → ``{"dynamic": {"alpha0": 0.3}}``; a key given twice is an error."""
    out: dict = {}
    for key, value in section.items():
        if not isinstance(key, str):
            raise bad_value(f"{where}.{key}", key, "is not a string key", "string keys")
        parts = key.split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            existing = node.get(part)
            if existing is None:
                node[part] = existing = {}
            if not isinstance(existing, dict):
                raise SpaceError(f"{where}.{'.'.join(parts[:i + 1])}: given twice (as a value and as "
                                 f"a section); expected one of the two")
            node = existing
        leaf = parts[-1]
        if isinstance(value, Mapping) and isinstance(node.get(leaf), dict):
            for sub_key, sub_value in expand_dotted(value, f"{where}.{key}").items():
                if sub_key in node[leaf]:
                    raise SpaceError(f"{where}.{key}.{sub_key}: given twice; expected it once")
                node[leaf][sub_key] = sub_value
        elif leaf in node:
            raise SpaceError(f"{where}.{key}: given twice; expected it once")
        else:
            node[leaf] = expand_dotted(value, f"{where}.{key}") if (
                isinstance(value, Mapping) and leaf in SUB_FIELDS) else value
    return out
