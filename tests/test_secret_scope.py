"""Secrets only where they are used: HF_TOKEN reaches the commands and containers that call the Hub, nothing else.

`download` (and its containers) fetches from the Hub; `list`, `verify` and `clear` run against the
lock or read none, the weekly volume check is a `verify --locked`, and a verify container re-hashes
the volume: none of them is handed the token. Read from the workflows' own steps and from the
options the containers are started with (the Modal app stood in: tests/modal_stand_ins.py).
"""

from __future__ import annotations

import threading

import pytest

from modal_jobs.model_list import parse_model_list
from tests.conftest import MODEL_LIST, SMALL
from tests.test_volume import container_jobs, starter
from tests.test_workflows import MODEL_CACHE, load_workflow, steps, workflow_paths

HF_TOKEN_ONLY_FOR_DOWNLOAD = "${{ env.OPERATION == 'download' && secrets.HF_TOKEN || '' }}"


def hf_token_holders() -> dict[tuple[str, str, str], str]:
    """(workflow, job, step) -> the value of HF_TOKEN, for every step whose environment names the secret."""
    holders = {}
    for path in workflow_paths():
        workflow = load_workflow(path)
        for job_id, job in workflow["jobs"].items():
            assert "secrets.HF_TOKEN" not in str(job.get("env", {})), f"{path.name}: {job_id} hands it to every step"
        for job_id, step in steps(workflow):
            for value in step.get("env", {}).values():
                if "secrets.HF_TOKEN" in str(value):
                    holders[(path.name, job_id, step.get("name", ""))] = str(value)
    return holders


def test_hf_token_reaches_only_the_step_that_downloads():
    """model-cache.yml's Run step, and there only when the operation is a download; no other step of any workflow."""
    assert hf_token_holders() == {("model-cache.yml", "model-cache", "Run"): HF_TOKEN_ONLY_FOR_DOWNLOAD}
    # The operation it tests is the job's, the one the step runs.
    assert "OPERATION" in load_workflow(MODEL_CACHE)["jobs"]["model-cache"]["env"]


@pytest.mark.parametrize(("operation", "function"), [("download", "apply_one"), ("verify", "verify_one")])
def test_only_download_containers_get_the_hub_token(
    fake_app: list[str], monkeypatch: pytest.MonkeyPatch, operation: str, function: str
):
    monkeypatch.setenv("HF_TOKEN", "hf_" + "t0k3n" * 6)
    starter(fake_app, parse_model_list(MODEL_LIST))(operation, container_jobs(SMALL), threading.Event())
    [spawned] = [line for line in fake_app if line.startswith("spawn")]
    assert spawned.startswith(f"spawn {function} {SMALL} ")
    secrets = "secrets=['Secret.from_dict([HF_TOKEN])']" if operation == "download" else "secrets=[]"
    assert spawned.endswith(secrets)
