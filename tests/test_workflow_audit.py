"""zizmor's online audits run on a schedule (they ask GitHub's API, which the tests cannot reach: read, not run).

`nox -s lint` stays offline; `workflow-audit.yml` runs `nox -s workflow-audit` weekly with GITHUB_TOKEN,
where zizmor runs without `--offline` (impostor commits, ref-version mismatch) and fails on a finding.
"""

from __future__ import annotations

import ast

from tests.conftest import ROOT
from tests.test_workflows import WORKFLOWS, load_workflow

AUDIT = WORKFLOWS / "workflow-audit.yml"


def zizmor_calls(session: str) -> list[list[str]]:
    """The `session.run("zizmor", …)` calls of a nox session, as written in noxfile.py."""
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    name = session.replace("-", "_")  # the function behind the session
    [function] = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name]
    return [
        [ast.literal_eval(arg) for arg in call.args]
        for call in ast.walk(function)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "run"
        and call.args
        and ast.literal_eval(call.args[0]) == "zizmor"
    ]


def test_the_online_audits_run_weekly_with_a_read_only_token_and_fail_on_findings():
    workflow = load_workflow(AUDIT)
    assert set(workflow["on"]) == {"schedule", "workflow_dispatch"}
    [job] = workflow["jobs"].values()
    assert job["permissions"] == {"contents": "read"}
    audit = next(step for step in job["steps"] if step.get("name") == "Audit")
    assert audit["env"] == {"GH_TOKEN": "${{ github.token }}"}
    assert audit["run"] == "python3 tools/nox_locked.py -R -s workflow-audit"
    assert "continue-on-error" not in audit and "continue-on-error" not in job  # a finding fails the run
    [online] = zizmor_calls("workflow-audit")
    assert "--offline" not in online and "--no-online-audits" not in online
    assert online[-1] == ".github"


def test_the_lint_gate_stays_offline():
    [offline] = zizmor_calls("lint")
    assert "--offline" in offline
