"""A workload or an architecture of your own, named by import path: ``"module:function"`` or
``{"factory": "module:function", "args": {...}}`` where a trial config takes a built-in name
(``workload``, ``arch``). docs/extending.md holds the contract of what each factory returns.

:func:`check_factory` normalises a config value (a built-in name stays a string; a factory becomes
``{"factory": ..., "args": {...}}``) and loads no torch, so :mod:`disparse_core.config` can call it.
:func:`call_factory` imports the module (looked up on ``sys.path``, then in the current working
directory) and calls the function with its ``args`` plus the keywords the library offers that the
function accepts. :func:`user_code_paths` says which files of the working directory a factory came
from, so the sweep can ship them to Ray workers. Every problem is a one-line ``ValueError`` naming the
key, the value and what was expected.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import os
import re
import sys
from pathlib import Path
from typing import Any, Mapping

__all__ = ["FACTORY_EXPECTED", "SEARCH_FOLDERS", "add_search_folder", "is_factory", "check_factory", "factory_key", "load_factory", "call_factory",
           "code_fingerprint", "user_code_paths", "module_paths"]

_PATH = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
FACTORY_EXPECTED = "a factory 'module:function' or {factory: 'module:function', args: {...}}"


def is_factory(value: Any) -> bool:
    """True for a normalised factory spec (``{"factory": ..., "args": ...}``)."""
    return isinstance(value, Mapping) and "factory" in value


def factory_key(spec: Mapping[str, Any]) -> str:
    """A stable text of a spec (cache key, messages); its ``code`` fingerprint plays no part."""
    import json
    return json.dumps({"factory": spec["factory"], "args": spec.get("args") or {}}, sort_keys=True, default=str)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def check_factory(key: str, value: Any, builtins: tuple[str, ...], what: str) -> Any:
    """``value`` as a config keeps it: a name of ``builtins`` as is, a factory as
    ``{"factory": "module:function", "args": {...}}`` (a copy); else a one-line ``ValueError``."""
    expected = f"one of {', '.join(builtins)}, or {FACTORY_EXPECTED}"
    if isinstance(value, str):
        if value in builtins:
            return value
        if ":" in value:
            value = {"factory": value}
        else:
            import difflib
            close = difflib.get_close_matches(value, builtins, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{key}: {value!r} is not a known {what}{hint}; expected {expected}")
    if not isinstance(value, Mapping):
        raise ValueError(f"{key}: {_show(value)} is not a {what} name or factory; expected {expected}")
    extra = [k for k in value if k not in ("factory", "args", "code")]
    if extra:
        raise ValueError(f"{key}.{extra[0]}: unknown key; expected factory and args")
    path = value.get("factory")
    if not isinstance(path, str) or not _PATH.fullmatch(path.strip()):
        raise ValueError(f"{key}.factory: {_show(path)} is not an import path; expected 'module:function' "
                         f"(e.g. 'mynet:build' for build() in mynet.py)")
    args = value.get("args")
    if args is None:
        args = {}
    if not isinstance(args, Mapping) or not all(isinstance(k, str) and k.isidentifier() for k in args):
        raise ValueError(f"{key}.args: {_show(args)} is not a mapping of keyword arguments; expected "
                         f"{{name: value, ...}}")
    out = {"factory": path.strip(), "args": copy.deepcopy(dict(args))}
    if value.get("code") is not None:       # the fingerprint of its source a sweep records (code_fingerprint)
        if not isinstance(value["code"], str):
            raise ValueError(f"{key}.code: {_show(value['code'])} is not a fingerprint; expected the text "
                             f"code_fingerprint gives (or no code key)")
        out["code"] = value["code"]
    return out


#: folders tried after ``sys.path`` and the working directory (the sweep adds its space file's folder)
SEARCH_FOLDERS: list[str] = []


def add_search_folder(folder: str | os.PathLike) -> None:
    """Also look for factory modules in ``folder`` (after ``sys.path`` and the working directory)."""
    folder = str(Path(folder).resolve())
    if folder not in SEARCH_FOLDERS:
        SEARCH_FOLDERS.append(folder)


def _import(module: str, key: str, path: str):
    folders = list(dict.fromkeys([os.getcwd(), *SEARCH_FOLDERS]))
    where = " or ".join(folders)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        missing = err.name or module
        if not module.startswith(missing) or all(f in sys.path for f in folders):
            raise ValueError(f"{key}.factory: {path!r} cannot be imported (no module named {missing!r}); "
                             f"expected a module in {where} or an installed one") from None
    sys.path.extend(f for f in folders if f not in sys.path)    # a module file next to the space, uninstalled
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        raise ValueError(f"{key}.factory: {path!r} cannot be imported (no module named "
                         f"{err.name or module!r}); expected a module in {where} or an installed one") from None
    except Exception as err:         # noqa: BLE001 - the user's module: any error is theirs, in one line
        raise ValueError(f"{key}.factory: importing {module!r} raised {_one_line(err)}; expected a module "
                         f"that imports cleanly") from None


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def load_factory(spec: Mapping[str, Any], key: str):
    """The callable a spec names (``ValueError`` naming ``key`` when it cannot be found)."""
    path = spec["factory"]
    module_name, _, attr = path.partition(":")
    try:
        module = _import(module_name, key, path)
    except ValueError:
        raise
    except Exception as err:         # noqa: BLE001
        raise ValueError(f"{key}.factory: importing {module_name!r} raised {_one_line(err)}; expected a "
                         f"module that imports cleanly") from None
    fn: Any = module
    for part in attr.split("."):
        if not hasattr(fn, part):
            raise ValueError(f"{key}.factory: {path!r}: module {module_name!r} has no {attr!r}; expected a "
                             f"function of that name in {getattr(module, '__file__', module_name)}")
        fn = getattr(fn, part)
    if not callable(fn):
        raise ValueError(f"{key}.factory: {path!r} is a {type(fn).__name__}, not a function; expected a "
                         f"callable")
    return fn


def _accepts(fn, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def call_factory(spec: Mapping[str, Any], key: str, *, offered: Mapping[str, Any] | None = None,
                 required: Mapping[str, Any] | None = None):
    """``function(**args, **extra)``: ``offered`` keywords are passed when the function takes them,
    ``required`` ones must be taken (a config key given for the factory); ``args`` win over both.
    An exception the factory raises becomes one ``ValueError`` line naming ``key`` and the factory."""
    fn = load_factory(spec, key)
    if spec.get("code") and code_fingerprint(spec) not in ("", spec["code"]):
        raise ValueError(f"{key}.code: the source of {spec['factory']!r} here ({code_fingerprint(spec)}) is not the "
                         f"one the sweep checked ({spec['code']}); expected the same code on every node (files "
                         f"edited during the sweep, or another version installed)")
    args = dict(spec.get("args") or {})
    extra = {k: v for k, v in (offered or {}).items() if k not in args and _accepts(fn, k)}
    for name, value in (required or {}).items():
        if name in args:
            continue
        if not _accepts(fn, name):
            raise ValueError(f"{name}: {_show(value)} is given, but {spec['factory']!r} takes no {name!r} "
                             f"argument; expected it in {key}.args or a factory with that parameter")
        extra[name] = value
    try:
        return fn(**args, **extra)
    except Exception as err:         # noqa: BLE001 - one line naming the factory, whatever it raised
        text = _one_line(err)
        if "expected" not in text:   # the library's own errors (task_info, custom_task) already say it
            text += (f"; expected it to return {'a Workload' if 'workload' in key else 'a model'} for args "
                     f"{_show(args)}")
        raise ValueError(f"{key}: factory {spec['factory']!r} raised {text}") from None


def code_fingerprint(spec: Mapping[str, Any]) -> str:
    """``sha256:<12 hex>`` of the source a factory came from (its module file, or every ``.py`` file of
    its top-level package), so that a config records which version of the user's code ran and a changed
    file is a changed config. Call after the factory loaded; ``""`` when the source cannot be read."""
    import hashlib
    top = spec["factory"].partition(":")[0].split(".")[0]
    module = sys.modules.get(top)
    paths = list(getattr(module, "__path__", []) or [])
    if paths:
        files = sorted(Path(paths[0]).rglob("*.py"))
    elif getattr(module, "__file__", None):
        files = [Path(module.__file__)]
    else:
        return ""
    digest = hashlib.sha256()
    try:
        for f in files:
            digest.update(str(f.relative_to(paths[0]) if paths else f.name).encode() + b"\0")
            digest.update(f.read_bytes() + b"\0")
    except (OSError, ValueError):
        return ""
    return "sha256:" + digest.hexdigest()[:12]


def user_code_paths(spec: Mapping[str, Any], root: str | os.PathLike | None = None) -> list[Path]:
    """The file (a module) or folder (a package) a factory was imported from, when it lies under ``root``
    (default: the working directory or a search folder); ``[]`` for an installed module. Call after the
    factory loaded."""
    return module_paths([spec["factory"].partition(":")[0]], root)


def module_paths(names, root: str | os.PathLike | None = None) -> list[Path]:
    """The files (modules) or folders (packages) of the top-level modules of ``names`` that were imported
    from under ``root`` (default: the working directory or a search folder), leaving out installed ones
    (under the Python installation or a ``site-packages`` folder, e.g. a virtual environment inside it)."""
    roots = [Path(r).resolve() for r in ([root] if root else [os.getcwd(), *SEARCH_FOLDERS])]
    installed = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    out: list[Path] = []
    for top in dict.fromkeys(str(n).split(".")[0] for n in names):
        module = sys.modules.get(top)
        paths = list(getattr(module, "__path__", []) or [])
        file = getattr(module, "__file__", None)
        where = Path(paths[0]) if paths else (Path(file) if file else None)
        if where is None:
            continue
        where = where.resolve()
        if not any(where == r or r in where.parents for r in roots) or any(p in where.parents for p in installed) \
                or {"site-packages", "dist-packages"} & set(where.parts):
            continue
        if where not in out:
            out.append(where)
    return out
