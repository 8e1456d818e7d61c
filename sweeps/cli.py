"""Command line of disparse-tune: argument parsing only (``tune.py`` and the ``disparse-tune`` script).

::

    python tune.py [run] [--space dynamic.yaml] [--trials N] [--set key=value ...] [--dry-run | --resume]
    python tune.py best [--budget seg.miou=-2% --budget normal.mean=+5%] [--sweep ID]
    python tune.py pareto [--sweep ID]
    python tune.py report [--sweep ID]

Bad input anywhere is one line ``error: ...`` on stderr and exit code 2, with no traceback and nothing
written. Imports are lazy so that ``--help`` and errors answer at once.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import os
import shlex
import sys
from pathlib import Path
from typing import Sequence

from .errors import RunError, UserInputError, text_value_problem
from .run import RunOptions, browse_lines, describe_plan, format_front, make_plan, run_sweep, signals
from .space import SEED_MAX

__all__ = ["main", "build_parser"]

EXIT_USAGE = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130          # Ctrl+C (SIGINT)
EXIT_TERMINATED = 143           # SIGTERM (kill PID, docker stop, a batch scheduler): handled like Ctrl+C
COMMANDS = ("run", "best", "pareto", "report")


class _Parser(argparse.ArgumentParser):
    """argparse that raises (one line) instead of printing the usage and exiting."""

    def error(self, message: str):  # noqa: D401 - argparse API
        if message.startswith("argument "):
            message = message[len("argument "):]
        if "invalid choice" in message:
            message = f"{message} (see {self.prog} --help)"
        raise UserInputError(message)

    def unrecognized(self, words: Sequence[str]) -> UserInputError:
        """``unrecognized arguments``, with the closest option and the ones this command takes."""
        flag = next((w for w in words if w.startswith("-")), words[0] if words else "")
        known = sorted({o for a in self._actions for o in a.option_strings if o.startswith("--")})
        close = difflib.get_close_matches(flag, known, n=1) if flag.startswith("-") else []
        hint = f" (did you mean {close[0]}?)" if close else ""
        return UserInputError(f"unrecognized arguments: {' '.join(words)}{hint}; expected options of "
                              f"{self.prog}: {', '.join(known)} (see {self.prog} --help)")


def _int_arg(flag: str, low: int, high: int | None = None):
    expected = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer; expected {expected}")
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is too small; expected {expected}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{value} is too large; expected {expected}")
        return value
    return parse


def _text_arg(text: str) -> str:
    """A text option: not empty or blank, on one line (:func:`sweeps.errors.text_value_problem`)."""
    problem = text_value_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def _store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", type=_text_arg, help="MLflow store (default: sqlite:///<cwd>/mlflow.db)")
    p.add_argument("--experiment", type=_text_arg, help="MLflow experiment (default: disparse-tune)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tune.py", description="Sweep DiSparse multitask compression configs with "
                     "Ray Tune + Optuna, track them in MLflow, pick the sparsest model within budgets.",
                     epilog="Without a command, tune.py runs a sweep: 'python tune.py --space dynamic' is "
                     "'python tune.py run --space dynamic'. Each command's options: "
                     "python tune.py COMMAND --help (e.g. run --help).")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    parser.commands = sub.choices  # name -> its parser (for messages naming the options it takes)

    run = sub.add_parser("run", help="run (or --resume) a sweep (the default command)")
    run.add_argument("--space", type=_text_arg, help="search space: a name from search_spaces/ or a YAML path "
                     "(default: dynamic)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a space entry, e.g. --set trials=4 (repeatable)")
    run.add_argument("--trials", type=_int_arg("--trials", 1), help="number of trials")
    run.add_argument("--concurrency", type=_int_arg("--concurrency", 1), help="trials at a time")
    run.add_argument("--seed", type=_int_arg("--seed", 0, SEED_MAX), help="sampler seed")
    run.add_argument("--ray-address", type=_text_arg, help="join a Ray cluster: 'auto' or HOST:PORT "
                     "(default: start a local Ray on 127.0.0.1)")
    _store_options(run)
    run.add_argument("--results-dir", type=_text_arg, help="where the sweep keeps its state "
                     "(default: ./disparse_results/<space name>)")
    run.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    run.add_argument("--dry-run", action="store_true", help="validate and print the plan; run nothing")
    run.add_argument("-v", "--verbose", action="store_true", help="Ray's own output, start-up timings")

    best = sub.add_parser("best", help="the sparsest trial within per-task budgets")
    best.add_argument("--budget", dest="budgets", action="append", default=[], metavar="METRIC=LIMIT",
                      help="repeatable, e.g. seg.miou=-2%% (relative to the dense baseline) or "
                           "seg.miou>=0.3 (default: the budgets of the sweep's space)")
    best.add_argument("--sweep", help="sweep id (default: the latest)")
    _store_options(best)

    for name, text in (("pareto", "the Pareto front of a sweep"), ("report", "a sweep at a glance")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--sweep", help="sweep id (default: the latest)")
        if name == "pareto":
            p.add_argument("--objective", dest="objectives", action="append", default=[], metavar="METRIC",
                           help="repeatable: the front of these metrics (each in its own direction) "
                                "instead of the sweep's objectives, e.g. --objective compression "
                                "--objective seg.miou")
        _store_options(p)
    return parser


def _with_default_command(argv: Sequence[str]) -> list[str]:
    argv = list(argv)
    if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        close = difflib.get_close_matches(argv[0], COMMANDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserInputError(f"unknown command {argv[0]!r}{hint}; expected one of {', '.join(COMMANDS)} "
                             f"or an option of run (see tune.py --help)")
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        return ["run"] + argv
    return argv


def _run(args, out) -> int:
    opts = RunOptions(space=args.space, overrides=args.overrides, trials=args.trials,
                      concurrency=args.concurrency, seed=args.seed, ray_address=args.ray_address,
                      tracking_uri=args.tracking_uri, experiment=args.experiment,
                      results_dir=args.results_dir, resume=args.resume, dry_run=args.dry_run,
                      verbose=args.verbose)
    plan = make_plan(opts)
    if args.dry_run:
        print(describe_plan(plan), file=out)
        print("dry run: nothing started, nothing written", file=out)
        return 0
    summary = run_sweep(plan, out=out)
    objectives = plan.spec.metric_names
    names = {"RERUN": "interrupted attempts rerun", "DUPLICATE": "repeated configurations not trained"}
    states = ", ".join(f"{names.get(n, n.lower())} {c}" for n, c in sorted(summary.states.items()))
    states = f" ({states})" if states else ""
    if summary.interrupted:
        print(f"\nsweep {summary.sweep_id} interrupted{states}; continue it with:\n"
              f"  {_self_command()} --resume --results-dir {summary.results_dir}", file=out)
        return EXIT_TERMINATED if signals.terminated() else EXIT_INTERRUPTED
    print(f"\nsweep {summary.sweep_id} finished in {summary.timings.get('total_s', 0):.0f}s{states}", file=out)
    hv = f", hypervolume {summary.hypervolume:.4g}" if summary.hypervolume is not None else ""
    print(f"Pareto front ({len(summary.front)} trials, fully trained only{hv}):", file=out)
    print(format_front(summary.front, objectives, among=summary.eligible), file=out)
    for msg in summary.tracking_errors[:5]:
        print(f"warning: {msg}", file=out)
    print(f"\nresults: {summary.results_dir}", file=out)
    for line in browse_lines(summary.tracking_uri, summary.experiment_id, summary.sweep_run_id,
                             str(plan.study_path)):
        print(line, file=out)
    print(f"choose:  {_self_command()} best {_budget_hint(plan.spec, summary)}--sweep {summary.sweep_id}"
          + ("" if plan.tracking_uri.endswith(f"/{'mlflow.db'}") else
             f" --tracking-uri {plan.tracking_uri}"), file=out)
    return 0


def _self_command() -> str:
    """How this command was started, for the commands it prints: ``python tune.py`` from the project
    folder, ``python /path/to/tune.py`` from elsewhere, ``disparse-tune`` for the installed script."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("tune.py")
    if script.name == "tune.py":
        here = script.resolve().parent == Path.cwd().resolve()
        return "python tune.py" if here else f"python {shlex.quote(str(script.resolve()))}"
    if script.name == "disparse-tune":
        return "disparse-tune"
    return "python tune.py"


def _budget_hint(spec, summary) -> str:
    """``--budget`` for the "choose:" line: none when the space declares budgets (``best`` uses them),
    else on the first task's primary metric: a 2 % loss against the dense baseline, or an absolute bound
    to fill in when the sweep has no baseline."""
    if spec.budgets:
        return ""
    from .budgets import higher_is_better
    from .plots import task_primary_metrics
    primaries = task_primary_metrics(summary.eligible, spec.metric_names)
    order = next(((r.get("config") or {}).get("tasks") for r in summary.eligible
                  if isinstance((r.get("config") or {}).get("tasks"), list)), [])
    metric = next((primaries[t] for t in order if t in primaries), next(iter(primaries.values()), "METRIC"))
    try:
        higher = higher_is_better(metric)
    except ValueError:
        higher = True
    if summary.baseline:
        return f"--budget {metric}={'-' if higher else '+'}2% "
    return f"--budget '{metric}{'>=' if higher else '<='}<value>' "


def _query(args, out, err) -> int:
    from . import queries
    from .budgets import parse_budgets

    common = dict(out=out, err=err)
    if args.command == "best":       # the --budget texts are parsed here, once, before the store is read
        try:
            budgets = parse_budgets(args.budgets) if args.budgets else None
        except UserInputError:       # a custom task's metric: its direction is on the sweep's run
            if not queries.register_sweep_directions(args.tracking_uri, args.experiment, args.sweep):
                raise
            budgets = parse_budgets(args.budgets)
        return queries.best(args.tracking_uri, args.experiment, budgets, args.sweep, **common)
    if args.command == "pareto":
        return queries.pareto(args.tracking_uri, args.experiment, args.sweep,
                              objectives=args.objectives or None, **common)
    return queries.report(args.tracking_uri, args.experiment, args.sweep, **common)


_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EDQUOT}


def _known_failure(exc: BaseException) -> tuple[str, int] | None:
    """One line (and exit code) for failures of the places a sweep writes, found only while writing."""
    seen, err = set(), exc
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        text = str(err).lower()  # sqlite3 / sqlalchemy OperationalError, or MLflow's wrapping of it
        if "database or disk is full" in text:
            return ("MLflow/Optuna store: database or disk is full; expected at least 50 MiB free where "
                    "--tracking-uri and --results-dir live", EXIT_USAGE)
        if "readonly database" in text or "read-only file system" in text:
            return ("MLflow/Optuna store: attempt to write a read-only database; expected a writable "
                    "--tracking-uri and --results-dir", EXIT_USAGE)
        if isinstance(err, OSError) and err.errno in _WRITE_ERRNOS:
            where = f" {err.filename!r}" if err.filename else ""
            return (f"cannot write{where} ({err.strerror or err}); expected a writable folder with free "
                    f"space for --results-dir and --tracking-uri", EXIT_USAGE)
        err = err.__cause__ or err.__context__
    return None


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush after a closed pipe is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (tests): nothing is flushed to a pipe
        pass


def main(argv: Sequence[str] | None = None, out=None, err=None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    signals.install()   # SIGTERM does what Ctrl+C does
    try:
        argv = _with_default_command(sys.argv[1:] if argv is None else argv)
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:
            raise parser.commands.get(args.command, parser).unrecognized(extra)
        if args.command == "run":
            return _run(args, out)
        return _query(args, out, err)
    except UserInputError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    except RunError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return EXIT_TERMINATED if signals.terminated() else EXIT_INTERRUPTED
    except BrokenPipeError:  # `tune.py pareto | head`: the reader left; nothing to report
        _quiet_stdout()
        return 0
    except Exception as exc:  # noqa: BLE001 - only the known ones; anything else keeps its traceback
        known = _known_failure(exc)
        if known is None:
            raise
        print(f"error: {known[0]}", file=err)
        return known[1]
    finally:
        signals.restore()


if __name__ == "__main__":
    sys.exit(main())
