"""``medseg regress``: every evaluation beside a baseline, metric by metric, each with its tolerance.

The current evaluations are a runs folder laid out as ``evaluate`` writes it
(``<dataset>/<init>/<profile>/<mode>/<strategy>/eval/metrics.json``; on Kubeflow, the collected evaluations). The
baseline is one of:

- the same runs folder as committed at a git revision (``regress.baseline_rev``, default ``main``): the
  metrics.json files are git-tracked (``cache: false`` in dvc.yaml) and read with ``git ls-tree`` and
  ``git cat-file``; a branch that exists only as ``origin/<name>`` (a CI clone) is read there;
- a baseline file (``regress.baseline_file``, ``--baseline``): JSON whose ``runs`` map each run to its metrics,
  such as an earlier ``regress.json`` (its ``runs`` are the evaluations it checked);
- the text of such a file (``--baseline-text``: the Kubeflow pipeline's run parameter).

Dice, IoU and NSD are fractions where higher is better; HD95 is in pixels and lower is better. A metric
regresses when it is worse than its baseline value by more than its tolerance (absolute, in the metric's unit).
Nothing to compare with is never a pass: a run (or a metric) without a baseline value is a one-line error
unless ``regress.new_runs: allow`` lists it as new, and a baseline run that is no longer evaluated fails the
check unless ``regress.dropped_runs: allow``. Selection blocks of original SAM (``oracle``) are compared as runs
of their own, ``<run> (oracle)``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from medseg.errors import MedsegError
from medseg.eval.layout import evaluation_files
from medseg.gitread import blobs as _blobs
from medseg.gitread import git as _git
from medseg.gitread import resolve_commit
from medseg.outputs import output_dir
from medseg.params_schema import REGRESS_METRICS, REVISION

METRICS = REGRESS_METRICS  # the metrics a check may compare, and which way is better
FORMAT = "medseg.regress/1"
HEADING = "# Regression check"
NAME = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
RUN_LABEL = re.compile(rf"(?:{NAME}/){{4}}{NAME}(?: \({NAME}\))?\Z")  # a run, or one of its selection blocks
SHOWN_FAILURES = 3

Values = dict[str, float | None]  # metric -> value (None: undefined for the run, e.g. HD95 of empty predictions)


@dataclass(frozen=True)
class Settings:
    """The ``regress`` section of params.yaml (checked by the schema)."""

    metrics: tuple[str, ...]
    tolerance: dict[str, float]
    new_runs: str = "fail"  # fail | allow
    dropped_runs: str = "fail"  # fail | allow

    @classmethod
    def from_params(cls, section: Mapping[str, Any]) -> Settings:
        return cls(tuple(section["metrics"]), {k: float(v) for k, v in section["tolerance"].items()},
                   section["new_runs"], section["dropped_runs"])


@dataclass(frozen=True)
class Baseline:
    """Baseline values per run, and where they came from."""

    runs: dict[str, Values]
    source: dict[str, str]
    label: str  # for people: "results/runs at main (1a2b3c4d5e6f)"


@dataclass(frozen=True)
class Row:
    """One comparison: a metric of a run, now and in the baseline."""

    run: str
    metric: str
    baseline: float | None
    now: float | None
    tolerance: float
    verdict: str  # ok | improved | regressed | new | dropped
    failed: bool

    @property
    def delta(self) -> float | None:
        return None if self.baseline is None or self.now is None else self.now - self.baseline


@dataclass(frozen=True)
class Result:
    rows: list[Row]
    markdown: str
    summary: str
    failed: bool
    folder: Path


# --- reading evaluations ------------------------------------------------------------------------------------


def _number(value: Any, where: str | Path, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MedsegError(f"{key} is not a number ({value!r:.40})", where)
    return float(value) if math.isfinite(value) else None


def _check_label(label: str, where: str | Path) -> str:
    """Runs become table rows (in pull-request comments too): plain names only."""
    if not isinstance(label, str) or not RUN_LABEL.match(label):
        raise MedsegError(f"{label!r:.80} is not a run <dataset>/<init>/<profile>/<mode>/<strategy> of plain names "
                          "(letters, digits, '_' and '-')", where)
    return label


def run_values(metrics: Any, key: str, where: str | Path) -> dict[str, Values]:
    """The comparable metrics of one evaluation (its ``metrics.json``), keyed by run, plus one entry per extra
    selection block (original SAM's ``oracle``) as ``<run> (<selection>)``."""
    if not isinstance(metrics, dict):
        raise MedsegError("corrupt metrics file (not a JSON object)", where)
    found = {_check_label(key, where): {m: _number(metrics[m], where, m) for m in METRICS if m in metrics}}
    for name, block in metrics.items():
        if isinstance(block, dict) and any(m in block for m in METRICS):
            label = _check_label(f"{key} ({name})", where)
            found[label] = {m: _number(block[m], where, f"{name}.{m}") for m in METRICS if m in block}
    return found


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MedsegError(f"corrupt metrics file ({exc.__class__.__name__})", path) from exc


def current_runs(roots: Sequence[str | Path]) -> dict[str, Values]:
    """Every evaluation under the runs folders (one, or a Kubeflow run's collected evaluations); a run found
    twice, or none at all, is an error."""
    runs: dict[str, Values] = {}
    for root, path in evaluation_files(roots):
        runs.update(run_values(_read_json(path), path.parent.parent.relative_to(root).as_posix(), path))
    if not runs:
        raise MedsegError("no evaluations found (<dataset>/<init>/<profile>/<mode>/<strategy>/eval/metrics.json): "
                          "run the evaluations first (dvc repro)", ", ".join(str(r) for r in roots))
    return runs


# --- the baseline ---------------------------------------------------------------------------------------------


def check_revision(rev: str, what: str) -> str:
    if not re.fullmatch(REVISION, rev) or ".." in rev:
        raise MedsegError("not a git revision (a branch, tag or commit such as main, origin/main, v1.2 or HEAD~1)",
                          f"{what} {rev!r}")
    return rev


def _resolve(root: Path, rev: str, what: str) -> tuple[str, str]:
    """(commit SHA, the name it was found under): ``rev``, or ``origin/<rev>`` in a clone that has only the
    remote-tracking branch."""
    for candidate in dict.fromkeys((rev, f"origin/{rev}")):
        commit = resolve_commit(root, candidate)
        if commit is not None:
            return commit, candidate
    shallow = _git(["rev-parse", "--is-shallow-repository"], root).stdout.decode().strip() == "true"
    hint = " (this clone is shallow: fetch the history, e.g. actions/checkout with fetch-depth: 0)" if shallow else ""
    raise MedsegError(f"no revision {rev!r} in {root}{hint}: nothing to compare with (fetch it, or name another "
                      "baseline)", what)


def baseline_at_revision(runs_dir: str | Path, rev: str, what: str = "regress.baseline_rev") -> Baseline:
    """The evaluations committed under ``runs_dir`` at git revision ``rev`` (``what`` names where the revision was
    set, for errors)."""
    check_revision(rev, what)
    runs = Path(runs_dir).resolve()
    if not runs.is_dir():
        raise MedsegError("runs directory not found", runs_dir)
    top = _git(["rev-parse", "--show-toplevel"], runs)
    if top.returncode:
        raise MedsegError(f"not in a git checkout, so there is no revision {rev!r} to read a baseline from: give a "
                          "baseline file (--baseline, regress.baseline_file)", runs_dir)
    root = Path(top.stdout.decode().strip()).resolve()
    commit, found_as = _resolve(root, rev, what)
    folder = runs.relative_to(root).as_posix()
    listing = _git(["ls-tree", "-r", "-z", "--full-tree", commit, *(["--", folder] if folder != "." else [])], root)
    if listing.returncode:
        raise MedsegError(f"git ls-tree failed: {listing.stderr.decode(errors='replace').strip()}", root)
    files: dict[str, str] = {}
    for entry in listing.stdout.decode(errors="replace").split("\0"):
        meta, _, path = entry.partition("\t")
        parts = PurePosixPath(path).parts[0 if folder == "." else len(PurePosixPath(folder).parts):]
        if meta.split()[1:2] == ["blob"] and len(parts) == 7 and parts[5:] == ("eval", "metrics.json"):
            files["/".join(parts[:5])] = meta.split()[2]
    label = f"{folder} at {found_as} ({commit[:12]})"
    if not files:
        raise MedsegError(f"no evaluations under {label}: nothing to compare with", what)
    values: dict[str, Values] = {}
    for (key, _), content in zip(sorted(files.items()), _blobs(root, [files[k] for k in sorted(files)]), strict=True):
        where = f"{found_as}:{folder}/{key}/eval/metrics.json"
        try:
            metrics = json.loads(content.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MedsegError(f"corrupt metrics file ({exc.__class__.__name__})", where) from exc
        values.update(run_values(metrics, key, where))
    source = {"kind": "revision", "rev": rev, "found_as": found_as, "commit": commit, "path": folder}
    return Baseline(values, source, label)


def baseline_from_text(text: str, where: str, source: dict[str, str] | None = None) -> Baseline:
    """A baseline file's content: ``{"runs": {"<run>": {"<metric>": value, ...}, ...}}`` (a ``regress.json`` is
    one)."""
    if not text.strip():
        raise MedsegError("empty: give a baseline file's content", where)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MedsegError(f"not a baseline file: not valid JSON ({exc.msg}, line {exc.lineno})", where) from exc
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, dict) or not runs:
        raise MedsegError('not a baseline file: expected {"runs": {"<run>": {"<metric>": value}}} with at least '
                          "one run", where)
    values: dict[str, Values] = {}
    for key, metrics in runs.items():
        _check_label(key, where)
        if not isinstance(metrics, dict):
            raise MedsegError(f"runs.{key}: expected a mapping of metric -> value", where)
        values[key] = {m: _number(v, where, f"runs.{key}.{m}") for m, v in metrics.items() if m in METRICS}
    return Baseline(values, source or {"kind": "text"}, where)


def baseline_from_file(path: str | Path) -> Baseline:
    file = Path(path)
    if not file.is_file():
        raise MedsegError("baseline file not found", path)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MedsegError("not a baseline file: not UTF-8 text", path) from exc
    return baseline_from_text(text, str(path), {"kind": "file", "file": str(path)})


def choose_baseline(options: Mapping[str, str | None], section: Mapping[str, Any],
                    roots: Sequence[str | Path]) -> Baseline:
    """The baseline named on the command line (``--baseline-rev``, ``--baseline`` or ``--baseline-text``, at most
    one), else ``regress.baseline_file``, else the runs folder at ``regress.baseline_rev``."""
    given = {flag: value for flag, value in options.items() if value is not None}
    if len(given) > 1:
        raise MedsegError(f"give one baseline, not {' and '.join(given)}")
    flag, value = next(iter(given.items()), (None, None))
    if flag == "--baseline":
        return baseline_from_file(value)
    if flag == "--baseline-text":
        return baseline_from_text(value, flag, {"kind": "text"})
    if flag is None and section.get("baseline_file"):
        return baseline_from_file(section["baseline_file"])
    rev, what = (value, flag) if flag else (section["baseline_rev"], "regress.baseline_rev")
    if len(roots) != 1:
        raise MedsegError(f"a revision's baseline ({rev}) reads one runs folder in a git checkout, not {len(roots)} "
                          "collected ones: give a baseline file (--baseline-text on Kubeflow)", what)
    return baseline_at_revision(roots[0], rev, what)


# --- comparing --------------------------------------------------------------------------------------------------


def _verdict(metric: str, before: float | None, now: float | None, tolerance: float) -> str:
    if before is None:
        return "ok" if now is None else "improved"  # a value where there was none
    if now is None:
        return "regressed"  # e.g. HD95 once every prediction is empty
    worse = before - now if METRICS[metric] == "higher" else now - before
    slack = 1e-9 * max(1.0, abs(before))  # float noise never decides a verdict
    if worse > tolerance + slack:
        return "regressed"
    return "improved" if -worse > tolerance + slack else "ok"


def compare(current: Mapping[str, Values], baseline: Baseline, settings: Settings) -> list[Row]:
    """One row per run and metric. A run or metric without a baseline value is an error unless
    ``new_runs: allow`` (then: verdict ``new``)."""
    unknown = [run for run in current if run not in baseline.runs]
    unknown += [f"{run} {metric}" for run, values in current.items() if run in baseline.runs
                for metric in settings.metrics if metric not in baseline.runs[run]]
    if unknown and settings.new_runs == "fail":
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise MedsegError(f"no baseline value for {unknown[0]}{more}: nothing to compare with (a new run? "
                          "regress.new_runs: allow lists it as new instead)", baseline.label)
    rows = []
    for run in sorted(set(current) | set(baseline.runs)):
        now, before = current.get(run), baseline.runs.get(run)
        for metric in settings.metrics:
            tolerance = settings.tolerance[metric]
            if now is None:
                rows.append(Row(run, metric, before.get(metric), None, tolerance, "dropped",  # type: ignore[union-attr]
                                settings.dropped_runs == "fail"))
            elif before is None or metric not in before:
                rows.append(Row(run, metric, None, now.get(metric), tolerance, "new", False))
            else:
                verdict = _verdict(metric, before[metric], now.get(metric), tolerance)
                rows.append(Row(run, metric, before[metric], now.get(metric), tolerance, verdict,
                                verdict == "regressed"))
    return rows


# --- the report ---------------------------------------------------------------------------------------------


def _value(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _delta(row: Row) -> str:
    return "–" if row.delta is None else f"{row.delta:+.4f}"


def _failure(row: Row) -> str:
    if row.verdict == "dropped":
        return f"{row.run} is no longer evaluated"
    if row.now is None:
        return f"{row.run} {row.metric} has no value any more (baseline {_value(row.baseline)})"
    moved = "rose" if METRICS[row.metric] == "lower" else "dropped"
    return (f"{row.run} {row.metric} {moved} from {_value(row.baseline)} to {_value(row.now)} ({_delta(row)}, "
            f"tolerance {row.tolerance:g})")


def summary_line(rows: list[Row], baseline: Baseline) -> str:
    """The check's verdict in one line: the failures by run and metric, or what passed."""
    failures = [row for row in rows if row.failed]
    dropped = list(dict.fromkeys(row.run for row in failures if row.verdict == "dropped"))
    named = [_failure(row) for row in failures if row.verdict != "dropped"]
    named += [_failure(next(row for row in failures if row.run == run)) for run in dropped]
    if named:
        more = f"; and {len(named) - SHOWN_FAILURES} more" if len(named) > SHOWN_FAILURES else ""
        return f"FAILED against {baseline.label}: {'; '.join(named[:SHOWN_FAILURES])}{more}"
    runs = len({row.run for row in rows})
    notes = [f"{count} {verdict}" for verdict in ("improved", "new", "dropped")
             if (count := sum(row.verdict == verdict for row in rows))]
    return (f"passed against {baseline.label}: {len(rows)} comparisons of {runs} run{'s' * (runs != 1)} within "
            f"tolerance{' (' + ', '.join(notes) + ')' if notes else ''}")


def markdown(rows: list[Row], baseline: Baseline, settings: Settings, runs_label: str, summary: str) -> str:
    tolerances = ", ".join(f"{m} {settings.tolerance[m]:g}" for m in settings.metrics)
    lines = [HEADING, "",
             f"Current evaluations: `{runs_label}`. Baseline: {baseline.label}.", "",
             "A metric regresses when it is worse than the baseline by more than its tolerance (absolute): Dice, "
             "IoU and NSD are fractions, higher is better; HD95 is in pixels, lower is better. "
             f"Tolerances: {tolerances}.", "",
             "| run | metric | baseline | now | delta | tolerance | verdict |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        verdict = f"**{row.verdict}**" if row.failed else row.verdict
        lines.append(f"| {row.run} | {row.metric} | {_value(row.baseline)} | {_value(row.now)} | {_delta(row)} | "
                     f"{row.tolerance:g} | {verdict} |")
    return "\n".join([*lines, "", f"**{summary.split(' ', 1)[0]}** {summary.split(' ', 1)[1]}", ""])


def write_regress(roots: Sequence[str | Path], out: str | Path, baseline: Baseline, settings: Settings) -> Result:
    """Compare every evaluation under ``roots`` with ``baseline`` and write ``regress.md`` (the table) and
    ``regress.json`` (every comparison; its ``runs`` are the evaluations checked, so it can serve as a later
    baseline file) to ``out``. Bad input raises before anything is written; a failed check is written too."""
    current = current_runs(roots)
    rows = compare(current, baseline, settings)
    summary = summary_line(rows, baseline)
    failed = any(row.failed for row in rows)
    runs_label = ", ".join(str(root) for root in roots)
    text = markdown(rows, baseline, settings, runs_label, summary)
    report = {"format": FORMAT, "passed": not failed, "summary": summary, "baseline": baseline.source,
              "current": [str(root) for root in roots],
              "settings": {"metrics": list(settings.metrics), "tolerance": settings.tolerance,
                           "new_runs": settings.new_runs, "dropped_runs": settings.dropped_runs},
              "directions": {m: METRICS[m] for m in settings.metrics},
              "comparisons": [{**asdict(row), "delta": row.delta} for row in rows],
              "runs": current}
    with output_dir("regress", out, list(roots)) as tmp:
        (tmp / "regress.md").write_text(text)
        (tmp / "regress.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return Result(rows, text, summary, failed, Path(out))
