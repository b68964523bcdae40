"""examples/eval: evaluation reports from Vertex AI's evaluation service and from an ADK
evaluation run, read by the gate.

google-adk cannot be installed beside Pulumi (their OpenTelemetry pins conflict), so the ADK
files here are written from its source (google/adk-python at
7c670f638bc17374ceb08740bdd057e55c9c2e12, google-adk 1.4.2: ``evaluation/eval_result.py``,
``eval_metrics.py``, ``evaluator.py``, ``local_eval_set_results_manager.py``), not produced by
``adk eval``; the Vertex AI script needs Google Cloud, so its summary writer is tested here and
its recorded output read by the gate."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentstage.cli import app
from agentstage.release.evidence import ADK_PASS_RATE, EvidenceError, read_eval
from agentstage.release.ledger import Ledger
from tests.conftest import ROOT

EVAL = ROOT / "examples" / "eval"
ADK_RESULT = EVAL / "adk" / "triage_agent_triage_golden_v5_1777629600.482113.evalset_result.json"
VERTEX_SUMMARY = EVAL / "vertex" / "research-agent-2.2.0.summary.json"
runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False, terminal_width=200)


def adk_result(cases: list[dict], **top) -> dict:
    """An EvalSetResult as ADK's ``model_dump_json`` writes it (snake_case field names)."""
    return {
        "eval_set_result_id": "triage_agent_triage_golden_v5_1.5",
        "eval_set_result_name": "triage_agent_triage_golden_v5_1.5",
        "eval_set_id": "triage_golden_v5",
        "eval_case_results": cases,
        "creation_timestamp": 1.5,
        **top,
    }


def adk_case(eval_id: str, status: int, **scores: float | None) -> dict:
    return {
        "eval_set_id": "triage_golden_v5",
        "eval_id": eval_id,
        "final_eval_status": status,
        "overall_eval_metric_results": [
            {"metric_name": name, "threshold": 0.5, "score": score, "eval_status": 3 if score is None else 1}
            for name, score in scores.items()
        ],
        "eval_metric_result_per_invocation": [],
        "session_id": f"___eval___session___{eval_id}",
    }


def write(path: Path, data: object, *, as_adk_writes_it: bool = False) -> Path:
    text = json.dumps(data)
    # LocalEvalSetResultsManager.save_eval_set_result: json.dumps(model_dump_json(), indent=2)
    path.write_text(json.dumps(text, indent=2) if as_adk_writes_it else text)
    return path


# --- the ADK reader ---------------------------------------------------------------------------


def test_the_recorded_adk_result_is_a_json_string_as_adk_writes_it_and_reads_as_the_case_means():
    raw = json.loads(ADK_RESULT.read_text())
    assert isinstance(raw, str)  # the local results manager double-encodes
    result = json.loads(raw)
    cases = result["eval_case_results"]
    expected: dict[str, list[float]] = {}
    for case in cases:
        for metric in case["overall_eval_metric_results"]:
            expected.setdefault(metric["metric_name"], []).append(metric["score"])
    report = read_eval(f"triage@1.0.0={ADK_RESULT}")
    assert (report.format, report.agent, report.version, report.dataset, report.examples) == (
        "adk",
        "triage",
        "1.0.0",
        "triage_golden_v5",
        10,
    )
    assert report.metrics == pytest.approx(
        {name: sum(v) / len(v) for name, v in expected.items()}
        | {ADK_PASS_RATE: sum(c["final_eval_status"] == 1 for c in cases) / len(cases)}
    )
    assert report.metrics == pytest.approx(
        {"tool_trajectory_avg_score": 0.95, "response_match_score": 0.806, "case_pass_rate": 0.9}
    )
    assert report.cost_per_request_usd is None


def test_adk_plain_object_and_camel_case_aliases_read_the_same(tmp_path):
    """The GCS results manager stores the object itself; the pydantic models accept their
    camelCase aliases too."""
    cases = [adk_case("a", 1, response_match_score=0.8), adk_case("b", 2, response_match_score=0.6)]
    plain = read_eval(str(write(tmp_path / "plain.json", adk_result(cases))))
    wrapped = read_eval(str(write(tmp_path / "wrapped.json", adk_result(cases), as_adk_writes_it=True)))
    camel = {
        "evalSetResultId": "x",
        "evalSetId": "triage_golden_v5",
        "evalCaseResults": [
            {
                "evalId": c["eval_id"],
                "finalEvalStatus": c["final_eval_status"],
                "overallEvalMetricResults": [
                    {"metricName": m["metric_name"], "threshold": 0.5, "score": m["score"], "evalStatus": 1}
                    for m in c["overall_eval_metric_results"]
                ],
                "evalMetricResultPerInvocation": [],
                "sessionId": "s",
            }
            for c in cases
        ],
    }
    aliased = read_eval(str(write(tmp_path / "camel.json", camel)))
    for report in (plain, wrapped, aliased):
        assert report.metrics == pytest.approx({"response_match_score": 0.7, "case_pass_rate": 0.5})
        assert (report.dataset, report.examples, report.format) == ("triage_golden_v5", 2, "adk")


def test_adk_cases_that_did_not_score_a_metric_are_left_out_of_its_mean_and_fail_the_pass_rate(tmp_path):
    cases = [
        adk_case("a", 1, tool_trajectory_avg_score=1.0, response_evaluation_score=None),
        adk_case("b", 3, tool_trajectory_avg_score=None, response_evaluation_score=None),
        adk_case("c", 2, tool_trajectory_avg_score=0.5, response_evaluation_score=None),
    ]
    report = read_eval(str(write(tmp_path / "r.json", adk_result(cases))))
    # response_evaluation_score was scored nowhere: absent, so a gate on it fails ("missing from")
    assert report.metrics == pytest.approx({"tool_trajectory_avg_score": 0.75, "case_pass_rate": 1 / 3})
    assert report.examples == 3


@pytest.mark.parametrize(
    "data, message",
    [
        (adk_result([]), "eval_case_results is empty: the ADK run evaluated no eval case"),
        (adk_result({"a": 1}), "eval_case_results: expected a list of eval case results"),
        (adk_result(["case"]), "eval_case_results[0]: expected an object (an ADK EvalCaseResult)"),
        (
            adk_result([adk_case("a", 1, x=1.0), adk_case("b", 0, x=1.0)]),
            "eval_case_results[1].final_eval_status: 0 is not an ADK EvalStatus (1 PASSED, 2 FAILED, 3 NOT_EVALUATED)",
        ),
        (
            adk_result([adk_case("a", "PASSED", x=1.0)]),
            'eval_case_results[0].final_eval_status: "PASSED" is not an ADK EvalStatus '
            "(1 PASSED, 2 FAILED, 3 NOT_EVALUATED)",
        ),
        (
            adk_result([{"final_eval_status": 1, "eval_id": "a"}]),
            "eval_case_results[0]: needs 'overall_eval_metric_results' (a list of metric results)",
        ),
        (
            adk_result([{"final_eval_status": 1, "overall_eval_metric_results": [{"score": 1.0}]}]),
            "eval_case_results[0].overall_eval_metric_results[0] needs 'metric_name' (a non-empty string)",
        ),
        (
            adk_result([adk_case("a", 1, response_match_score="high")]),
            'eval_case_results[0].overall_eval_metric_results[0].score: "high" is not a number',
        ),
        (
            adk_result([adk_case("a", 1, response_match_score=-0.5)]),
            "eval_case_results[0].overall_eval_metric_results[0].score: -0.5 is negative",
        ),
        (
            adk_result([adk_case("a", 1, case_pass_rate=1.0)]),
            "eval_case_results[0].overall_eval_metric_results[0]: metric case_pass_rate is the name agentstage "
            "gives the cases' pass rate",
        ),
        (
            adk_result(
                [
                    {
                        "final_eval_status": 1,
                        "overall_eval_metric_results": [
                            {"metric_name": "x", "score": 1.0},
                            {"metric_name": "x", "score": 0.0},
                        ],
                    }
                ]
            ),
            "eval_case_results[0].overall_eval_metric_results[1]: metric x is given twice for this eval case",
        ),
        (
            adk_result([adk_case("a", 1, x=1.0)], eval_set_id=""),
            'eval_set_id: "" is not a name (a non-empty string)',
        ),
        (
            {"eval_set_id": "s"},
            "neither an agentstage report (a 'metrics' object), Vertex AI evaluation output (a 'summary_metrics' "
            "object or list) nor an ADK eval set result (an 'eval_case_results' list)",
        ),
    ],
)
def test_bad_adk_results(tmp_path, data, message):
    path = write(tmp_path / "result.evalset_result.json", data)
    with pytest.raises(EvidenceError) as err:
        read_eval(str(path))
    assert str(err.value) == f"evaluation report {path}: {message}"


def test_a_json_string_that_is_not_json_inside(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps("{not json"))
    with pytest.raises(EvidenceError) as err:
        read_eval(str(path))
    assert str(err.value) == (
        f"evaluation report {path}: the JSON string it holds (as adk eval writes it): not valid JSON: "
        "Expecting property name enclosed in double quotes (line 1, column 2)"
    )


def test_an_unbound_adk_result_fails_the_evaluation_report_gate(tmp_path):
    project = tmp_path / "team"
    shutil.copytree(ROOT / "examples" / "team-stack", project)
    result = cli(
        "gate",
        "production",
        "--from",
        "staging",
        "-C",
        str(project),
        "--eval",
        f"triage={ADK_RESULT}",
        "--load-test",
        str(project / "evidence" / "locust"),
        "--cost-per-request",
        "0.0021",
        "--json",
    )
    assert result.exit_code == 1, result.output
    items = {i["name"]: i for i in json.loads(result.output)["items"]}
    assert items["evaluation report"]["ok"] is False
    assert items["evaluation report"]["evidence"] == (
        f"{ADK_RESULT.name} (adk) does not name the release version; bind it with --eval triage@1.0.0=FILE"
    )


def test_the_adk_result_of_another_dataset_fails_the_gate(tmp_path):
    project = tmp_path / "team"
    shutil.copytree(ROOT / "examples" / "team-stack", project)
    data = json.loads(json.loads(ADK_RESULT.read_text()))
    data["eval_set_id"] = "triage_golden_v4"
    other = write(tmp_path / "v4.evalset_result.json", data, as_adk_writes_it=True)
    result = cli(
        "gate",
        "production",
        "--from",
        "staging",
        "-C",
        str(project),
        "--eval",
        f"triage@1.0.0={other}",
        "--load-test",
        str(project / "evidence" / "locust"),
        "--cost-per-request",
        "0.0021",
        "--json",
    )
    assert result.exit_code == 1, result.output
    items = {i["name"]: i for i in json.loads(result.output)["items"]}
    assert (items["evaluation report"]["ok"], items["evaluation report"]["evidence"]) == (
        False,
        f"{other.name} (adk) used dataset triage_golden_v4",
    )


def test_promote_the_team_candidate_on_its_adk_evaluation(tmp_path):
    project = tmp_path / "team"
    shutil.copytree(ROOT / "examples" / "team-stack", project)
    result = cli(
        "promote",
        "staging",
        "production",
        "-C",
        str(project),
        "--eval",
        f"triage@1.0.0={ADK_RESULT}",
        "--load-test",
        str(project / "evidence" / "locust"),
        "--cost-per-request",
        "0.0021",
    )
    assert result.exit_code == 0, result.output
    assert "promoted staging -> production: triage 1.0.0 at 5%" in result.output
    (promo,) = Ledger(project, "production").decisions("triage")
    scores = {g["name"]: (g["ok"], g["evidence"]) for g in promo["gates"] if g["name"].startswith("eval ")}
    assert scores == {
        "eval case_pass_rate": (True, "0.9"),
        "eval response_match_score": (True, "0.806"),
        "eval tool_trajectory_avg_score": (True, "0.95"),
        "eval vs stable": (None, scores["eval vs stable"][1]),
    }


# --- the Vertex AI script ---------------------------------------------------------------------


def _load_script():
    spec = importlib.util.spec_from_file_location("vertex_evaluate", EVAL / "vertex" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_vertex_script_imports_no_sdk_until_it_evaluates():
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('ev', {str(EVAL / 'vertex' / 'evaluate.py')!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "print(sorted(n for n in ('vertexai', 'pandas', 'google.cloud.aiplatform') if n in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_the_vertex_summary_writer_keeps_finite_numbers_and_the_dataset():
    script = _load_script()

    class Numpyish(float):
        """What pandas gives: a float subclass (numpy.float64 is one)."""

    summary = {
        "row_count": Numpyish(1.0),
        "task_success/mean": Numpyish(1.0),
        "task_success/std": float("nan"),  # pandas' std of one row
        "groundedness/mean": 0.5,
    }
    document = script.summary_document(summary, "research-golden@4")
    assert document == {
        "summary_metrics": {"row_count": 1, "task_success/mean": 1.0, "groundedness/mean": 0.5},
        "dataset": "research-golden@4",
    }
    assert json.loads(json.dumps(document)) == document  # valid JSON: no NaN


def test_the_recorded_vertex_summary_is_what_the_script_writes_and_the_gate_reads(tmp_path):
    script = _load_script()
    recorded = json.loads(VERTEX_SUMMARY.read_text())
    assert script.summary_document(recorded["summary_metrics"], recorded["dataset"]) == recorded
    report = read_eval(f"research-agent@2.2.0={VERTEX_SUMMARY}")
    assert (report.format, report.agent, report.version, report.dataset, report.examples) == (
        "vertex-ai",
        "research-agent",
        "2.2.0",
        "research-golden@4",
        120,
    )
    assert report.metrics == {"task_success": 0.9, "groundedness": 0.875, "safety": 1.0}


def test_the_vertex_script_reads_its_dataset_and_says_what_a_row_lacks(tmp_path):
    script = _load_script()
    rows = script.read_dataset(EVAL / "vertex" / "research-golden-4.sample.jsonl")
    assert len(rows) == 3 and all(set(r) == {"prompt", "response"} for r in rows)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "response": "r"}\n{"prompt": "q"}\n')
    with pytest.raises(SystemExit) as err:
        script.read_dataset(bad)
    assert str(err.value) == f"{bad}:2: needs response (a non-empty string)"


def test_the_vertex_script_says_how_to_install_the_sdk_when_it_is_missing(tmp_path):
    try:
        import pandas  # noqa: F401
        from vertexai.evaluation import EvalTask  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the Vertex AI evaluation SDK is installed: the script would call Google Cloud")
    script = _load_script()
    with pytest.raises(SystemExit) as err:
        script.main(
            [
                "--project",
                "p",
                "--dataset",
                str(EVAL / "vertex" / "research-golden-4.sample.jsonl"),
                "--output",
                str(tmp_path / "out.json"),
            ]
        )
    assert str(err.value).startswith("the Vertex AI evaluation SDK is not installed (")
    assert str(err.value).endswith("pip install 'agentstage[vertex]' 'google-cloud-aiplatform[evaluation]'")
    assert not (tmp_path / "out.json").exists()


# --- the README -------------------------------------------------------------------------------


def readme_commands() -> list[str]:
    """The ``agentstage`` lines of the README's offline walkthrough (its first bash block)."""
    text = (EVAL / "README.md").read_text()
    block = re.search(r"## Try it offline.*?```bash\n(.*?)```", text, re.S).group(1)
    return block.strip().splitlines()


def test_the_readme_walkthrough_gates_both_reports(tmp_path, monkeypatch):
    lines = readme_commands()
    assert lines[0] == "cp -r examples /tmp/eval-demo && cd /tmp/eval-demo"
    demo = tmp_path / "eval-demo"
    shutil.copytree(ROOT / "examples", demo, ignore=shutil.ignore_patterns(".agentstage", "__pycache__"))
    monkeypatch.chdir(demo)  # the README's `cd`: its paths are relative to the copy
    commands = lines[1:]
    assert len(commands) == 2 and all(c.startswith("agentstage gate ") for c in commands)
    gated = []
    for line in commands:
        args = shlex.split(line)[1:]
        result = cli(*args, "--json")
        assert result.exit_code == 0, result.output
        out = json.loads(result.output)
        assert out["passed"] is True
        gated.append({i["agent"]: i["evidence"] for i in out["items"] if i["name"] == "evaluation report"})
    assert gated == [
        {"research-agent": "research-agent-2.2.0.summary.json (vertex-ai): 2.2.0, research-golden@4"},
        {"triage": f"{ADK_RESULT.name} (adk): 1.0.0, triage_golden_v5"},
    ]
