"""Score a release candidate with Vertex AI's Gen AI evaluation service and write the summary
that ``agentstage gate --eval AGENT@VERSION=FILE`` reads.

The dataset is "bring your own response": one JSON object per line with the user's ``prompt``
(for a grounded answer, the prompt carries the context the agent retrieved) and the candidate's
``response``, collected by replaying the golden set against the candidate's tag URL before any
user traffic reaches it. The evaluation service judges each row with a model:

- ``task_success``: did the answer do what the user asked (a rubric of our own, 1 or 0);
- ``groundedness``: Vertex AI's prebuilt metric, 1 when every claim is supported by the prompt;
- ``safety``: Vertex AI's prebuilt metric, 1 when the answer is free of harmful content.

Every score is 0 or 1, so each mean is a rate the gate thresholds in ``gates.eval`` compare
with directly.

This script needs Google Cloud: the ``vertex`` extra (google-cloud-aiplatform with its
``evaluation`` extra, which brings pandas), credentials and a project with the Vertex AI API.
It cannot run offline; ``research-agent-2.2.0.summary.json`` beside it is a recorded output.
The Vertex AI SDK is imported only when the evaluation runs, so ``--help`` and the summary
writer work without it.

    python examples/eval/vertex/evaluate.py --project acme-agents-staging --location us-central1 \\
        --dataset research-golden-4.jsonl --dataset-version research-golden@4 \\
        --output research-agent-2.2.0.summary.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Our own rubric: what "the task succeeded" means for a research answer. Scored 1 or 0 so that
#: the mean is the success rate.
TASK_SUCCESS_CRITERIA = {
    "task_success": (
        "The response completes the task the user asked for: it answers the question that was asked, "
        "in full, or says plainly that it cannot and why. A partial answer, an answer to another "
        "question or a refusal without reason is not a success."
    )
}
TASK_SUCCESS_RUBRIC = {
    "1": "The response completes the user's task.",
    "0": "The response does not complete the user's task.",
}

#: The columns a dataset row must have (the prompt templates' input variables).
COLUMNS = ("prompt", "response")


def read_dataset(path: Path) -> list[dict[str, str]]:
    """The rows of a JSON Lines dataset, each with a non-empty ``prompt`` and ``response``."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        missing = [c for c in COLUMNS if not isinstance(row.get(c), str) or not row[c].strip()]
        if missing:
            raise SystemExit(f"{path}:{number}: needs {' and '.join(missing)} (a non-empty string)")
        rows.append({c: row[c] for c in COLUMNS})
    if not rows:
        raise SystemExit(f"{path}: no rows")
    return rows


def summary_document(summary_metrics: Mapping[str, Any], dataset_version: str | None) -> dict[str, Any]:
    """What the gate reads: ``EvalResult.summary_metrics`` as plain JSON numbers, with the dataset
    version the rows came from.

    The SDK's summary holds numpy numbers, and ``<metric>/std`` is NaN when a single row was
    scored; JSON has no NaN (and agentstage refuses it), so a value that is not a finite number
    is left out. The release (agent and version) is not written: the gate binds the file to the
    release on its command line (``--eval research-agent@2.2.0=FILE``), so one file cannot be
    mistaken for another release's."""
    summary: dict[str, Any] = {}
    for key, value in summary_metrics.items():
        number = float(value)
        if math.isfinite(number):
            summary[str(key)] = int(number) if key == "row_count" else number
    document: dict[str, Any] = {"summary_metrics": summary}
    if dataset_version:
        document["dataset"] = dataset_version
    return document


def evaluate(rows: list[dict[str, str]], *, project: str, location: str, experiment: str | None) -> Mapping[str, Any]:
    """Run the EvalTask and return its ``summary_metrics`` (needs Google Cloud)."""
    try:
        import pandas as pd
        import vertexai
        from vertexai.evaluation import (
            EvalTask,
            MetricPromptTemplateExamples,
            PointwiseMetric,
            PointwiseMetricPromptTemplate,
        )
    except ImportError as err:
        raise SystemExit(
            f"the Vertex AI evaluation SDK is not installed ({err}): pip install 'agentstage[vertex]' "
            "'google-cloud-aiplatform[evaluation]'"
        ) from None
    vertexai.init(project=project, location=location)
    task_success = PointwiseMetric(
        metric="task_success",
        metric_prompt_template=PointwiseMetricPromptTemplate(
            criteria=TASK_SUCCESS_CRITERIA, rating_rubric=TASK_SUCCESS_RUBRIC, input_variables=["prompt"]
        ),
    )
    task = EvalTask(
        dataset=pd.DataFrame(rows),
        metrics=[
            task_success,
            MetricPromptTemplateExamples.Pointwise.GROUNDEDNESS,
            MetricPromptTemplateExamples.Pointwise.SAFETY,
        ],
        experiment=experiment,
    )
    return task.evaluate().summary_metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", required=True, help="Google Cloud project that runs the evaluation")
    parser.add_argument("--location", default="us-central1", help="Vertex AI region (default: us-central1)")
    parser.add_argument("--dataset", required=True, type=Path, help="JSON Lines: prompt, response per row")
    parser.add_argument(
        "--dataset-version", help="the release's eval_dataset (e.g. research-golden@4), written as 'dataset'"
    )
    parser.add_argument("--experiment", help="Vertex AI experiment to log the run to (optional)")
    parser.add_argument("--output", required=True, type=Path, help="the summary file to write")
    args = parser.parse_args(argv)
    rows = read_dataset(args.dataset)
    summary = evaluate(rows, project=args.project, location=args.location, experiment=args.experiment)
    document = summary_document(summary, args.dataset_version)
    args.output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(
        f"wrote {args.output}: {len(rows)} rows; "
        + ", ".join(f"{k} {v:g}" for k, v in document["summary_metrics"].items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
