"""Readers of release evidence: evaluation reports, Locust ``--csv`` output, memory series.

Evaluation reports come in two shapes (documented in ``docs/release.md``):

- the plain agentstage report: ``{"agent", "version", "dataset", "metrics": {name: score},
  "cost_per_request_usd"?}``;
- Vertex AI's Gen AI evaluation output: ``summary_metrics`` either as the SDK's mapping
  (``"<metric>/mean": score``, ``"row_count": n``) or as a list of aggregated results
  (``{"metric_name", "mean_score"}``). It does not name the release, so bind it on the command
  line: ``--eval support-bot@1.5.0=vertex-summary.json``.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["EvidenceError", "EvalReport", "LoadTest", "read_eval", "read_locust", "read_memory", "parse_binding"]


class EvidenceError(Exception):
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
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvidenceError(f"{what} {path} does not exist") from None
    except json.JSONDecodeError as err:
        raise EvidenceError(f"{what} {path}: not valid JSON: {err}") from None


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
    if not isinstance(data, dict):
        raise EvidenceError(f"evaluation report {path}: expected a JSON object")
    if "summary_metrics" in data:
        report = _vertex(path, data)
    elif "metrics" in data:
        report = _plain(path, data)
    else:
        raise EvidenceError(
            f"evaluation report {path}: neither an agentstage report (a 'metrics' object) nor Vertex AI "
            "evaluation output (a 'summary_metrics' object or list)"
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


def _plain(path: Path, data: dict[str, Any]) -> EvalReport:
    metrics = data["metrics"]
    if not isinstance(metrics, dict) or not metrics:
        raise EvidenceError(f"evaluation report {path}: 'metrics' must be a non-empty object of metric -> score")
    scores = {str(k): _number(v, f"evaluation report {path}: metrics.{k}") for k, v in metrics.items()}
    cost = data.get("cost_per_request_usd")
    return EvalReport(
        str(path), "agentstage", data.get("agent"), _opt_str(data.get("version")), data.get("dataset"), scores,
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
            scores[str(item["metric_name"])] = _number(item["mean_score"], f"evaluation report {path}: summary_metrics[{i}].mean_score")
            if "num_cases_total" in item:
                rows = _examples(item["num_cases_total"], f"evaluation report {path}: summary_metrics[{i}].num_cases_total")
    if not scores:
        raise EvidenceError(f"evaluation report {path}: summary_metrics has no mean scores")
    return EvalReport(str(path), "vertex-ai", data.get("agent"), _opt_str(data.get("version")),
                      data.get("dataset"), scores, None, rows)


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)


# --- Locust ------------------------------------------------------------------------------------


@dataclass
class LoadTest:
    path: str
    requests: int
    failures: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    duration_s: float | None = None
    peak_users: int | None = None
    history_points: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def error_rate(self) -> float | None:
        return self.failures / self.requests if self.requests else None


def _stats_file(raw: str) -> Path:
    path = Path(raw)
    if path.is_dir():
        found = sorted(path.glob("*_stats.csv"))
        if len(found) != 1:
            raise EvidenceError(
                f"load test {path}: expected one Locust *_stats.csv in the directory, found {len(found)}"
            )
        return found[0]
    if path.name.endswith("_stats.csv"):
        return path
    candidate = path.with_name(path.name + "_stats.csv")
    if candidate.is_file():
        return candidate
    raise EvidenceError(f"load test {raw}: no Locust stats file (give PREFIX_stats.csv, the --csv PREFIX or its directory)")


def _float(row: dict[str, str], key: str) -> float | None:
    value = (row.get(key) or "").strip()
    if not value or value in ("N/A", "nan"):
        return None
    return float(value)


def read_locust(raw: str) -> LoadTest:
    """The aggregated figures of a Locust run from its ``--csv`` files."""
    stats = _stats_file(raw)
    try:
        with stats.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        raise EvidenceError(f"load test {stats} does not exist") from None
    aggregated = [r for r in rows if (r.get("Name") or "").strip() == "Aggregated"]
    if not aggregated:
        raise EvidenceError(f"load test {stats}: no 'Aggregated' row; is this Locust --csv output?")
    row = aggregated[-1]
    try:
        result = LoadTest(
            str(stats), int(float(row["Request Count"])), int(float(row["Failure Count"])),
            _float(row, "50%"), _float(row, "95%"), _float(row, "99%"),
        )
    except (KeyError, ValueError) as err:
        raise EvidenceError(f"load test {stats}: unexpected columns or values ({err})") from None
    if result.requests <= 0 or result.failures < 0 or result.failures > result.requests:
        raise EvidenceError(
            f"load test {stats}: the Aggregated row counts {result.requests} requests and {result.failures} failures; "
            "a run needs requests, and failures between 0 and the requests")
    history = stats.with_name(stats.name[: -len("_stats.csv")] + "_stats_history.csv")
    if history.is_file():
        with history.open(newline="", encoding="utf-8") as fh:
            hrows = [r for r in csv.DictReader(fh) if (r.get("Name") or "").strip() == "Aggregated"]
        stamps = [float(r["Timestamp"]) for r in hrows if (r.get("Timestamp") or "").strip()]
        users = [int(float(r["User Count"])) for r in hrows if (r.get("User Count") or "").strip()]
        result.history_points = len(hrows)
        result.duration_s = (max(stamps) - min(stamps)) if stamps else None
        result.peak_users = max(users) if users else None
    return result


# --- memory ------------------------------------------------------------------------------------


def read_memory(raw: str) -> list[tuple[float, float]]:
    """(seconds, bytes) points from a CSV with a header ``timestamp,memory_bytes``."""
    path = Path(raw)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"timestamp", "memory_bytes"} <= set(reader.fieldnames):
                raise EvidenceError(f"memory series {path}: expected the columns timestamp,memory_bytes")
            points = [(float(r["timestamp"]), float(r["memory_bytes"])) for r in reader]
    except FileNotFoundError:
        raise EvidenceError(f"memory series {path} does not exist") from None
    except ValueError as err:
        raise EvidenceError(f"memory series {path}: {err}") from None
    if len(points) < 3:
        raise EvidenceError(f"memory series {path}: needs at least 3 points, has {len(points)}")
    if any(not math.isfinite(b) or b < 0 for _, b in points) or not any(b > 0 for _, b in points):
        raise EvidenceError(
            f"memory series {path}: memory_bytes must be finite, not negative, and not all zero (an empty "
            "measurement proves nothing about a leak)")
    return points
