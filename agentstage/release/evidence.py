"""Readers of release evidence: evaluation reports, Locust ``--csv`` output with its manifest,
memory series. Every number is checked finite and in range before a gate sees it.

Evaluation reports come in three shapes (documented in ``docs/release.md``):

- the plain agentstage report: ``{"agent", "version", "dataset", "metrics": {name: score},
  "cost_per_request_usd"?}``;
- Vertex AI's Gen AI evaluation output: ``summary_metrics`` either as the SDK's mapping
  (``"<metric>/mean": score``, ``"row_count": n``) or as a list of aggregated results
  (``{"metric_name", "mean_score"}``). It does not name the release, so bind it on the command
  line: ``--eval support-bot@1.5.0=vertex-summary.json``.
- an ADK evaluation run: the ``EvalSetResult`` that ``adk eval`` writes under
  ``<agent>/.adk/eval_history/*.evalset_result.json`` (per eval case, each metric's overall
  score), averaged per metric over the eval cases; bound on the command line like Vertex output.

A Locust run is bound to the release it measured by a manifest beside its CSV files,
``PREFIX_manifest.json`` (or ``manifest.json`` in a directory holding one run):
``{"agent", "version", "url", "started", "ended", "phases"?}`` (docs/release.md).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agentstage.errors import BadInput
from agentstage.inputs import load_json, parse_json, reported_as, text_stream

__all__ = [
    "EvidenceError",
    "EvalReport",
    "LoadTest",
    "LoadTestManifest",
    "LoadFigures",
    "LocustRow",
    "HistoryPoint",
    "RampPoint",
    "MANIFEST_KEYS",
    "read_eval",
    "read_locust",
    "read_load_tests",
    "read_manifest",
    "read_memory",
    "parse_binding",
    "is_health_row",
]


class EvidenceError(BadInput):
    """An evidence file is missing or unreadable."""


@dataclass
class EvalReport:
    path: str
    format: str
    agent: str | None
    version: str | None
    dataset: str | None
    metrics: dict[str, float]
    cost_per_request_usd: float | None = None
    examples: int | None = None


_BINDING = re.compile(r"^(?P<agent>[a-z][-a-z0-9]*)(?:@(?P<version>[0-9A-Za-z][0-9A-Za-z.+_-]*))?=(?P<path>.+)$")


def parse_binding(text: str) -> tuple[str | None, str | None, str]:
    """``[AGENT[@VERSION]=]PATH`` -> (agent, version, path)."""
    m = _BINDING.match(text)
    if m and not Path(text).exists():
        return m.group("agent"), m.group("version"), m.group("path")
    return None, None, text


def _load_json(path: Path, what: str) -> Any:
    with reported_as(EvidenceError):
        return load_json(path, what)


def _csv_rows(path: Path, what: str) -> list[dict[str, str]]:
    with reported_as(EvidenceError):
        return list(csv.DictReader(text_stream(path, what)))


def _number(value: Any, where: str) -> float:
    """A finite, non-negative number (scores, costs and counts are never below zero)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EvidenceError(f"{where}: {json.dumps(value)} is not a number")
    if not math.isfinite(value):
        raise EvidenceError(f"{where}: {value} is not a finite number")
    if value < 0:
        raise EvidenceError(f"{where}: {value:g} is negative")
    return float(value)


def _examples(value: Any, where: str) -> int | None:
    """How many examples an evaluation ran: None when not given, else at least 1."""
    if value is None:
        return None
    count = _number(value, where)
    if count < 1 or count != int(count):
        raise EvidenceError(f"{where}: {count:g} is not a number of examples (a whole number, at least 1)")
    return int(count)


def read_eval(text: str) -> EvalReport:
    """Read an evaluation report given as ``[AGENT[@VERSION]=]PATH``."""
    agent, version, raw = parse_binding(text)
    path = Path(raw)
    data = _load_json(path, "evaluation report")
    if isinstance(data, str):
        data = _adk_unwrap(path, data)
    if not isinstance(data, dict):
        raise EvidenceError(f"evaluation report {path}: expected a JSON object")
    if "summary_metrics" in data:
        report = _vertex(path, data)
    elif "metrics" in data:
        report = _plain(path, data)
    elif _adk_key(data, "eval_case_results") is not None:
        report = _adk(path, data)
    else:
        raise EvidenceError(
            f"evaluation report {path}: neither an agentstage report (a 'metrics' object), Vertex AI "
            "evaluation output (a 'summary_metrics' object or list) nor an ADK eval set result "
            "(an 'eval_case_results' list)"
        )
    if agent:
        if report.agent and report.agent != agent:
            raise EvidenceError(f"evaluation report {path} is for agent {report.agent!r}, not {agent!r}")
        report.agent = agent
    if version:
        if report.version and report.version != version:
            raise EvidenceError(f"evaluation report {path} is for version {report.version}, not {version}")
        report.version = version
    return report


def _names(path: Path, data: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """The report's own agent, version and dataset, each a string when given."""
    out = []
    for key in ("agent", "version", "dataset"):
        value = data.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise EvidenceError(
                f"evaluation report {path}: {key}: {json.dumps(value)} is not a name (a non-empty string)"
            )
        out.append(value)
    return out[0], out[1], out[2]


def _plain(path: Path, data: dict[str, Any]) -> EvalReport:
    metrics = data["metrics"]
    if not isinstance(metrics, dict) or not metrics:
        raise EvidenceError(f"evaluation report {path}: 'metrics' must be a non-empty object of metric -> score")
    scores = {str(k): _number(v, f"evaluation report {path}: metrics.{k}") for k, v in metrics.items()}
    cost = data.get("cost_per_request_usd")
    return EvalReport(
        str(path),
        "agentstage",
        *_names(path, data),
        scores,
        None if cost is None else _number(cost, f"evaluation report {path}: cost_per_request_usd"),
        _examples(data.get("examples"), f"evaluation report {path}: examples"),
    )


def _vertex(path: Path, data: dict[str, Any]) -> EvalReport:
    summary = data["summary_metrics"]
    scores: dict[str, float] = {}
    rows = None
    if isinstance(summary, dict):
        for key, value in summary.items():
            if key == "row_count":
                rows = _examples(value, f"evaluation report {path}: summary_metrics.row_count")
            elif key.endswith("/mean"):
                scores[key[: -len("/mean")]] = _number(value, f"evaluation report {path}: summary_metrics.{key}")
    elif isinstance(summary, list):
        for i, item in enumerate(summary):
            if not isinstance(item, dict) or "metric_name" not in item or "mean_score" not in item:
                raise EvidenceError(
                    f"evaluation report {path}: summary_metrics[{i}] needs 'metric_name' and 'mean_score'"
                )
            scores[str(item["metric_name"])] = _number(
                item["mean_score"], f"evaluation report {path}: summary_metrics[{i}].mean_score"
            )
            if "num_cases_total" in item:
                rows = _examples(
                    item["num_cases_total"], f"evaluation report {path}: summary_metrics[{i}].num_cases_total"
                )
    if not scores:
        raise EvidenceError(f"evaluation report {path}: summary_metrics has no mean scores")
    return EvalReport(str(path), "vertex-ai", *_names(path, data), scores, None, rows)


# --- ADK ---------------------------------------------------------------------------------------
# The shape of an ADK eval set result, read from the google/adk-python source at commit
# 7c670f638bc17374ceb08740bdd057e55c9c2e12 (google-adk 1.4.2):
# - src/google/adk/evaluation/eval_result.py: ``EvalSetResult`` {eval_set_result_id,
#   eval_set_result_name, eval_set_id, eval_case_results: [EvalCaseResult], creation_timestamp};
#   ``EvalCaseResult`` {eval_set_id, eval_id, final_eval_status, overall_eval_metric_results:
#   [EvalMetricResult], eval_metric_result_per_invocation, session_id, session_details?, user_id?}.
# - src/google/adk/evaluation/eval_metrics.py: ``EvalMetricResult`` {metric_name, threshold,
#   score: float | None, eval_status}.
# - src/google/adk/evaluation/evaluator.py: ``EvalStatus`` is an Enum PASSED = 1, FAILED = 2,
#   NOT_EVALUATED = 3 (pydantic writes an Enum as its value).
# - src/google/adk/evaluation/local_eval_set_results_manager.py (used by ``adk eval``,
#   src/google/adk/cli/cli_tools_click.py ``cli_eval``) saves
#   ``json.dumps(eval_set_result.model_dump_json(), indent=2)`` to
#   ``<agents dir>/<app>/.adk/eval_history/<eval_set_result_name>.evalset_result.json``: the file
#   holds a JSON *string* whose content is the result (``get_eval_set_result`` reads it back with
#   ``json.load`` then ``model_validate_json``); the GCS manager
#   (gcs_eval_set_results_manager.py) stores the object itself. Both are read here.
# ``model_dump_json`` writes the field names (snake_case); the models also accept their camelCase
# aliases (``alias_generator=to_camel, populate_by_name=True``), so both spellings are read.

#: ADK's EvalStatus values (evaluator.py).
ADK_STATUS = {1: "PASSED", 2: "FAILED", 3: "NOT_EVALUATED"}

#: The metric added to an ADK report: the share of eval cases whose ``final_eval_status`` is
#: PASSED, ADK's own verdict per case (``adk eval`` counts every other case as failed).
ADK_PASS_RATE = "case_pass_rate"


def _adk_key(data: dict[str, Any], key: str) -> Any:
    """``data[key]`` under its field name or its camelCase alias (None when absent)."""
    if key in data:
        return data[key]
    head, *rest = key.split("_")
    return data.get(head + "".join(w.title() for w in rest))


def _adk_unwrap(path: Path, text: str) -> Any:
    """The result inside the JSON string ``adk eval`` writes (see above)."""
    with reported_as(EvidenceError):
        return parse_json(text, f"evaluation report {path}: the JSON string it holds (as adk eval writes it)")


def _adk(path: Path, data: dict[str, Any]) -> EvalReport:
    """Each metric's score averaged over the eval cases that scored it, plus ``case_pass_rate``.

    A case's ``overall_eval_metric_results`` already averages its invocations (ADK); a metric a
    case did not evaluate (``score`` null) is left out of that metric's mean (a metric no case
    scored is absent), and the case counts as not passed in ``case_pass_rate``: gate the pass
    rate and a run that skipped cases cannot pass on the cases it did score alone."""
    where = f"evaluation report {path}"
    cases = _adk_key(data, "eval_case_results")
    if not isinstance(cases, list):
        raise EvidenceError(f"{where}: eval_case_results: expected a list of eval case results")
    if not cases:
        raise EvidenceError(f"{where}: eval_case_results is empty: the ADK run evaluated no eval case")
    dataset = _adk_key(data, "eval_set_id")
    if dataset is not None and (not isinstance(dataset, str) or not dataset.strip()):
        raise EvidenceError(f"{where}: eval_set_id: {json.dumps(dataset)} is not a name (a non-empty string)")
    sums: dict[str, list[float]] = {}
    passed = 0
    for i, case in enumerate(cases):
        at = f"{where}: eval_case_results[{i}]"
        if not isinstance(case, dict):
            raise EvidenceError(f"{at}: expected an object (an ADK EvalCaseResult)")
        status = _adk_key(case, "final_eval_status")
        if isinstance(status, bool) or status not in ADK_STATUS:
            raise EvidenceError(
                f"{at}.final_eval_status: {json.dumps(status)} is not an ADK EvalStatus "
                "(1 PASSED, 2 FAILED, 3 NOT_EVALUATED)"
            )
        passed += status == 1
        results = _adk_key(case, "overall_eval_metric_results")
        if not isinstance(results, list):
            raise EvidenceError(f"{at}: needs 'overall_eval_metric_results' (a list of metric results)")
        seen: set[str] = set()
        for j, result in enumerate(results):
            at_j = f"{at}.overall_eval_metric_results[{j}]"
            name = _adk_key(result, "metric_name") if isinstance(result, dict) else None
            if not isinstance(name, str) or not name.strip():
                raise EvidenceError(f"{at_j} needs 'metric_name' (a non-empty string)")
            if name in seen:
                raise EvidenceError(f"{at_j}: metric {name} is given twice for this eval case")
            seen.add(name)
            if name == ADK_PASS_RATE:
                raise EvidenceError(f"{at_j}: metric {name} is the name agentstage gives the cases' pass rate")
            score = _adk_key(result, "score")
            scores = sums.setdefault(name, [])
            if score is not None:
                scores.append(_number(score, f"{at_j}.score"))
    # a metric no case scored is absent, as from any report: a gate on it fails ("missing from")
    metrics = {name: sum(scores) / len(scores) for name, scores in sorted(sums.items()) if scores}
    metrics[ADK_PASS_RATE] = passed / len(cases)
    return EvalReport(str(path), "adk", None, None, dataset, metrics, None, len(cases))


# --- Locust ------------------------------------------------------------------------------------

#: Keys a load-test manifest must give (docs/release.md, "Load test manifest").
MANIFEST_KEYS = ("agent", "version", "url", "started", "ended")

#: How far (seconds) the history's timestamps may lie outside the manifest's started..ended.
CLOCK_SKEW_S = 60.0

_AGENT = re.compile(r"^[a-z][-a-z0-9]*$")


@dataclass
class LocustRow:
    """One endpoint row of ``PREFIX_stats.csv`` (or its Aggregated row)."""

    type: str
    name: str
    requests: int
    failures: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


@dataclass
class HistoryPoint:
    """One row of ``PREFIX_stats_history.csv``: the Aggregated row of a sample, or an endpoint's
    (``--csv-full-history``)."""

    timestamp: float
    users: int
    name: str
    requests_per_s: float
    failures_per_s: float
    total_requests: int | None
    total_failures: int | None


@dataclass
class RampPoint:
    """The request rate of one history sample without health checks."""

    timestamp: float
    users: int
    requests_per_s: float
    failures_per_s: float
    total_requests: float | None
    total_failures: float | None


@dataclass
class Phase:
    name: str
    started: dt.datetime
    ended: dt.datetime
    users: int | None = None


@dataclass
class LoadTestManifest:
    """What a Locust run measured: which agent and release, where, when (``PREFIX_manifest.json``)."""

    path: str
    agent: str
    version: str
    url: str
    started: dt.datetime
    ended: dt.datetime
    phases: list[Phase] = field(default_factory=list)

    def window(self) -> str:
        return f"{_iso(self.started)} to {_iso(self.ended)}"


@dataclass
class LoadFigures:
    """A run's figures without its health-check rows.

    ``exact``: the percentiles are the run's own (nothing excluded, or a single endpoint left);
    else they are the highest of the remaining endpoints' percentiles, an upper bound of the
    percentiles of their union."""

    requests: int
    failures: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    excluded: list[LocustRow]
    kept: list[LocustRow]
    exact: bool

    @property
    def error_rate(self) -> float | None:
        return self.failures / self.requests if self.requests else None

    @property
    def share(self) -> float:
        """The share of the run's requests that are not health checks."""
        total = self.requests + sum(r.requests for r in self.excluded)
        return self.requests / total if total else 0.0


@dataclass
class LoadTest:
    """One Locust run: its ``--csv`` files and its manifest. ``requests``, ``failures`` and the
    percentiles are the Aggregated row's (every request, health checks included); the gate
    judges :meth:`figures` instead."""

    path: str
    requests: int
    failures: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    duration_s: float | None = None
    peak_users: int | None = None
    history_points: int = 0
    rows: list[LocustRow] = field(default_factory=list)
    history: list[HistoryPoint] = field(default_factory=list)
    history_path: str | None = None
    manifest: LoadTestManifest | None = None
    #: where the manifest belongs (``PREFIX_manifest.json``), for the message when it is missing
    manifest_path: str = ""

    @property
    def error_rate(self) -> float | None:
        return self.failures / self.requests if self.requests else None

    @property
    def name(self) -> str:
        return Path(self.path).name

    def figures(self, health_path: str) -> LoadFigures:
        """Requests, failures and percentiles without the rows of ``health_path``. When rows are
        excluded the Aggregated row no longer applies: counts are summed exactly, percentiles
        are the highest of the remaining rows' (exact when one row remains)."""
        excluded = [r for r in self.rows if is_health_row(r.name, health_path)]
        kept = [r for r in self.rows if not is_health_row(r.name, health_path)]
        if not excluded:
            return LoadFigures(self.requests, self.failures, self.p50_ms, self.p95_ms, self.p99_ms, [], kept, True)

        def highest(key: str) -> float | None:
            values = [getattr(r, key) for r in kept if getattr(r, key) is not None]
            return max(values) if values else None

        return LoadFigures(
            sum(r.requests for r in kept),
            sum(r.failures for r in kept),
            highest("p50_ms"),
            highest("p95_ms"),
            highest("p99_ms"),
            excluded,
            kept,
            len(kept) == 1,
        )

    def ramp(self, health_path: str) -> tuple[list[RampPoint], str]:
        """The request rate over time without health checks, and how it was obtained: from the
        endpoints' own history rows (``--csv-full-history``) when present, else the Aggregated
        rows scaled by the run's share of non-health requests (all failures counted)."""
        endpoint_rows = [h for h in self.history if h.name != "Aggregated"]
        aggregated = sorted((h for h in self.history if h.name == "Aggregated"), key=lambda h: h.timestamp)
        if endpoint_rows:
            by_time: dict[float, list[HistoryPoint]] = {}
            for h in endpoint_rows:
                by_time.setdefault(h.timestamp, []).append(h)
            points = []
            for t in sorted(by_time):
                rows = [h for h in by_time[t] if not is_health_row(h.name, health_path)]
                totals = all(h.total_requests is not None and h.total_failures is not None for h in rows)
                points.append(
                    RampPoint(
                        t,
                        max(h.users for h in by_time[t]),
                        sum(h.requests_per_s for h in rows),
                        sum(h.failures_per_s for h in rows),
                        float(sum(h.total_requests or 0 for h in rows)) if totals and rows else None,
                        float(sum(h.total_failures or 0 for h in rows)) if totals and rows else None,
                    )
                )
            return points, f"per-endpoint history, {health_path} excluded"
        share = self.figures(health_path).share
        points = [
            RampPoint(
                h.timestamp,
                h.users,
                h.requests_per_s * share,
                h.failures_per_s,
                None if h.total_requests is None else h.total_requests * share,
                None if h.total_failures is None else float(h.total_failures),
            )
            for h in aggregated
        ]
        if share < 1:
            return points, f"Aggregated history x {share:.1%}, the share of requests other than {health_path}"
        return points, "Aggregated history"


def is_health_row(name: str, health_path: str) -> bool:
    """Whether a Locust row (named by its path, or its URL) is a request of the health check."""
    name = name.strip()
    parts = urlsplit(name)
    path = parts.path if parts.scheme and parts.netloc else name.split("?", 1)[0]
    return (path.rstrip("/") or "/") == (health_path.rstrip("/") or "/")


def _stats_files(raw: str) -> list[Path]:
    path = Path(raw)
    if path.is_dir():
        found = sorted(path.glob("*_stats.csv"))
        if not found:
            raise EvidenceError(f"load test {path}: expected Locust *_stats.csv files in the directory, found none")
        return found
    if path.name.endswith("_stats.csv"):
        if not path.is_file():
            raise EvidenceError(f"load test {path} does not exist")
        return [path]
    candidate = path.with_name(path.name + "_stats.csv")
    if candidate.is_file():
        return [candidate]
    raise EvidenceError(
        f"load test {raw}: no Locust stats file (give PREFIX_stats.csv, the --csv PREFIX or its directory)"
    )


def _cell(row: dict[str, str], key: str) -> str:
    return (row.get(key) or "").strip()


def _whole(text: str, where: str) -> int:
    """A whole number as Locust writes counts (``12`` or ``12.0``); the range is checked by the caller."""
    try:
        value = float(text)
    except ValueError:
        raise EvidenceError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value) or value != int(value):
        raise EvidenceError(f"{where}: {text!r} is not a whole number")
    return int(value)


def _rate(text: str, where: str, what: str) -> float | None:
    """A finite, non-negative measurement (ms, requests/s); empty, ``N/A`` -> None."""
    if not text or text in ("N/A", "nan"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise EvidenceError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise EvidenceError(f"{where}: {text!r} is not {what} (finite, not negative)")
    return value


def _row(stats: Path, row: dict[str, str]) -> LocustRow:
    name = _cell(row, "Name")
    label = "the Aggregated row" if name == "Aggregated" else f"row {(_cell(row, 'Type') + ' ' + name).strip()}"
    where = f"load test {stats}: {label}"
    for key in ("Request Count", "Failure Count"):
        if key not in row:
            raise EvidenceError(f"load test {stats}: unexpected columns or values (no {key!r} column)")
    requests = _whole(_cell(row, "Request Count"), f"{where}: Request Count")
    failures = _whole(_cell(row, "Failure Count"), f"{where}: Failure Count")
    percentiles = [_rate(_cell(row, k), f"{where}: {k}", "a response time in ms") for k in ("50%", "95%", "99%")]
    return LocustRow(_cell(row, "Type"), name, requests, failures, *percentiles)


def _history(stats: Path, history: Path) -> list[HistoryPoint]:
    rows = _csv_rows(history, "load test history")
    points = []
    for line, row in enumerate(rows, start=2):
        where = f"load test {history}: line {line}"
        if not _cell(row, "Timestamp"):
            continue
        stamp = _rate(_cell(row, "Timestamp"), f"{where}: Timestamp", "a time in seconds")
        users = _whole(_cell(row, "User Count") or "0", f"{where}: User Count")
        if users < 0:
            raise EvidenceError(f"{where}: User Count: {users} is negative")
        totals = []
        for key in ("Total Request Count", "Total Failure Count"):
            text = _cell(row, key)
            value = _whole(text, f"{where}: {key}") if text and text != "N/A" else None
            if value is not None and value < 0:
                raise EvidenceError(f"{where}: {key}: {value} is negative")
            totals.append(value)
        points.append(
            HistoryPoint(
                float(stamp or 0.0),
                users,
                _cell(row, "Name") or "Aggregated",
                _rate(_cell(row, "Requests/s"), f"{where}: Requests/s", "a request rate") or 0.0,
                _rate(_cell(row, "Failures/s"), f"{where}: Failures/s", "a failure rate") or 0.0,
                *totals,
            )
        )
    return points


def read_locust(raw: str) -> LoadTest:
    """One Locust run from its ``--csv`` files (a stats file, the prefix, or a directory holding
    one run), with its manifest when there is one."""
    files = _stats_files(raw)
    if len(files) != 1:
        raise EvidenceError(f"load test {raw}: expected one Locust *_stats.csv in the directory, found {len(files)}")
    return _read_run(files[0], single=Path(raw).is_dir())


def read_load_tests(raw: str) -> list[LoadTest]:
    """Every Locust run given by ``raw``: a stats file, a prefix, or a directory of runs (each
    ``PREFIX_stats.csv`` with its ``PREFIX_manifest.json``)."""
    files = _stats_files(raw)
    return [_read_run(f, single=Path(raw).is_dir() and len(files) == 1) for f in files]


def _read_run(stats: Path, *, single: bool) -> LoadTest:
    rows = _csv_rows(stats, "load test")
    aggregated = [r for r in rows if _cell(r, "Name") == "Aggregated"]
    if not aggregated:
        raise EvidenceError(f"load test {stats}: no 'Aggregated' row; is this Locust --csv output?")
    total = _row(stats, aggregated[-1])
    if total.requests <= 0 or total.failures < 0 or total.failures > total.requests:
        raise EvidenceError(
            f"load test {stats}: the Aggregated row counts {total.requests} requests and {total.failures} failures; "
            "a run needs requests, and failures between 0 and the requests"
        )
    endpoints = [_row(stats, r) for r in rows if _cell(r, "Name") != "Aggregated"]
    for r in endpoints:
        if r.requests < 0 or r.failures < 0 or r.failures > r.requests:
            raise EvidenceError(
                f"load test {stats}: row {(r.type + ' ' + r.name).strip()} counts {r.requests} requests and "
                f"{r.failures} failures; failures must be between 0 and the requests"
            )
    if endpoints:
        n, f = sum(r.requests for r in endpoints), sum(r.failures for r in endpoints)
        if (n, f) != (total.requests, total.failures):
            raise EvidenceError(
                f"load test {stats}: the endpoint rows count {n} requests and {f} failures, the Aggregated row "
                f"{total.requests} and {total.failures}; is the file complete?"
            )
    result = LoadTest(
        str(stats), total.requests, total.failures, total.p50_ms, total.p95_ms, total.p99_ms, rows=endpoints
    )
    prefix = stats.name[: -len("_stats.csv")]
    history = stats.with_name(prefix + "_stats_history.csv")
    if history.is_file():
        result.history_path = str(history)
        result.history = _history(stats, history)
        agg = [h for h in result.history if h.name == "Aggregated"]
        result.history_points = len(agg)
        result.duration_s = (max(h.timestamp for h in agg) - min(h.timestamp for h in agg)) if agg else None
        result.peak_users = max(h.users for h in agg) if agg else None
    manifest = stats.with_name(prefix + "_manifest.json")
    result.manifest_path = str(manifest)
    if not manifest.is_file() and single and (stats.parent / "manifest.json").is_file():
        manifest = stats.parent / "manifest.json"
    if manifest.is_file():
        result.manifest = read_manifest(manifest)
        _check_window(result, history)
    return result


def _time(value: Any, where: str) -> dt.datetime:
    if not isinstance(value, str):
        raise EvidenceError(f"{where}: {json.dumps(value)} is not a time; give ISO 8601 UTC, e.g. 2026-05-01T12:00:00Z")
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise EvidenceError(f"{where}: {value!r} is not a time; give ISO 8601 UTC, e.g. 2026-05-01T12:00:00Z") from None
    if t.tzinfo is None:
        raise EvidenceError(f"{where}: {value!r} has no time zone; give ISO 8601 UTC, e.g. 2026-05-01T12:00:00Z")
    return t.astimezone(dt.timezone.utc)


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def read_manifest(path: Path) -> LoadTestManifest:
    """A load-test manifest: ``{"agent", "version", "url", "started", "ended", "phases"?}``
    (other keys are ignored)."""
    data = _load_json(path, "load test manifest")
    where = f"load test manifest {path}"
    if not isinstance(data, dict):
        raise EvidenceError(f"{where}: expected a JSON object with {', '.join(MANIFEST_KEYS)}")
    missing = [k for k in MANIFEST_KEYS if k not in data]
    if missing:
        raise EvidenceError(f"{where}: missing {', '.join(missing)} (needs {', '.join(MANIFEST_KEYS)})")
    agent, version, url = data["agent"], data["version"], data["url"]
    if not isinstance(agent, str) or not _AGENT.match(agent):
        raise EvidenceError(f"{where}: agent: {json.dumps(agent)} is not an agent name")
    if not isinstance(version, str) or not version.strip():
        raise EvidenceError(
            f'{where}: version: {json.dumps(version)} is not a release version (a string, e.g. "1.5.0")'
        )
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise EvidenceError(f"{where}: url: {json.dumps(url)} is not the http(s) URL the run called")
    started, ended = _time(data["started"], f"{where}: started"), _time(data["ended"], f"{where}: ended")
    if ended <= started:
        raise EvidenceError(f"{where}: ended {_iso(ended)} is not after started {_iso(started)}")
    phases = []
    raw_phases = data.get("phases", [])
    if not isinstance(raw_phases, list):
        raise EvidenceError(f"{where}: phases must be a list of {{name, started, ended, users?}}")
    for i, p in enumerate(raw_phases):
        at = f"{where}: phases[{i}]"
        if not isinstance(p, dict) or not isinstance(p.get("name"), str) or not p["name"]:
            raise EvidenceError(f"{at} needs a 'name', 'started' and 'ended'")
        ps, pe = _time(p.get("started"), f"{at}.started"), _time(p.get("ended"), f"{at}.ended")
        if not started <= ps < pe <= ended:
            raise EvidenceError(
                f"{at}: {_iso(ps)} to {_iso(pe)} is not a period within the run ({_iso(started)} to {_iso(ended)})"
            )
        users = p.get("users")
        if users is not None and (isinstance(users, bool) or not isinstance(users, int) or users < 0):
            raise EvidenceError(f"{at}.users: {json.dumps(users)} is not a number of users")
        phases.append(Phase(p["name"], ps, pe, users))
    return LoadTestManifest(str(path), agent, version, url, started, ended, phases)


def _check_window(run: LoadTest, history: Path) -> None:
    """The history of the run must lie within the manifest's started..ended: else the manifest
    describes another run."""
    m = run.manifest
    if m is None or not run.history:
        return
    first, last = min(h.timestamp for h in run.history), max(h.timestamp for h in run.history)
    lo, hi = m.started.timestamp() - CLOCK_SKEW_S, m.ended.timestamp() + CLOCK_SKEW_S
    if first < lo or last > hi:
        at = lambda t: _iso(dt.datetime.fromtimestamp(t, dt.timezone.utc))  # noqa: E731
        raise EvidenceError(
            f"load test {history}: the run's samples span {at(first)} to {at(last)}, outside its manifest's "
            f"{m.window()} ({Path(m.path).name}); the manifest describes another run"
        )


# --- memory ------------------------------------------------------------------------------------


def read_memory(raw: str) -> list[tuple[float, float]]:
    """(seconds, bytes) points from a CSV with a header ``timestamp,memory_bytes``."""
    path = Path(raw)
    with reported_as(EvidenceError):
        reader = csv.DictReader(text_stream(path, "memory series"))
    try:
        if not reader.fieldnames or not {"timestamp", "memory_bytes"} <= set(reader.fieldnames):
            raise EvidenceError(f"memory series {path}: expected the columns timestamp,memory_bytes")
        points = [(float(r["timestamp"]), float(r["memory_bytes"])) for r in reader]
    except ValueError as err:
        raise EvidenceError(f"memory series {path}: {err}") from None
    if len(points) < 3:
        raise EvidenceError(f"memory series {path}: needs at least 3 points, has {len(points)}")
    stamps = [t for t, _ in points]
    if any(not math.isfinite(t) for t in stamps) or any(b <= a for a, b in zip(stamps, stamps[1:])):
        raise EvidenceError(
            f"memory series {path}: timestamp must be finite and increasing (seconds, one point per time)"
        )
    if any(not math.isfinite(b) or b < 0 for _, b in points) or not any(b > 0 for _, b in points):
        raise EvidenceError(
            f"memory series {path}: memory_bytes must be finite, not negative, and not all zero (an empty "
            "measurement proves nothing about a leak)"
        )
    return points
