"""Run many ``tune.py`` argument lists in ONE Python process (torch is imported once, not per case).

``python cli_harness.py CASES.json`` reads ``[{"id", "argv", "cwd"}, ...]`` and prints one JSON line per
case: ``{"id", "code", "stdout", "stderr", "crash"}``. ``code`` is what ``sweeps.cli.main(argv)`` returned
(or the ``SystemExit`` code); ``crash`` is the traceback of any other exception that escaped ``main``
(a bug: the CLI must turn every input error into one line and exit code 2).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sweeps.cli import main  # noqa: E402


def run_case(case: dict) -> dict:
    out, err = io.StringIO(), io.StringIO()
    crash = None
    os.chdir(case["cwd"])
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(case["argv"], out=out, err=err)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported, not hidden
        code, crash = None, traceback.format_exc()
    return {"id": case["id"], "code": code, "stdout": out.getvalue(), "stderr": err.getvalue(),
            "crash": crash}


if __name__ == "__main__":
    for case in json.loads(Path(sys.argv[1]).read_text()):
        print(json.dumps(run_case(case)), flush=True)
