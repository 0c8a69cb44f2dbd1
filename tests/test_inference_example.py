"""The inference example, offline: its Modal footprint agrees with models.toml, and it finds what the cache wrote.

No GPU, torch or model download: the class is read through `Function.info()`, and its
model-finding function runs against a target the cache wrote from the local hub.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from modal_jobs.model_list import load_model_list
from modal_jobs.reader import ModelNotReady
from tests.conftest import ROOT, SMALL, Cli, Repos, assert_complete, model_dir

EXAMPLE = ROOT / "examples" / "inference.py"


def load_example() -> ModuleType:
    """The example as `modal run examples/inference.py` loads it: a file, not a package's module."""
    name = "qwen3_tts_inference_example"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example() -> ModuleType:
    return load_example()


def test_its_volume_mount_and_model_are_those_of_models_toml(example: ModuleType):
    model_list = load_model_list(ROOT / "models.toml")
    assert (model_list.volume.name, model_list.volume.mount) == (example.VOLUME_NAME, example.MOUNT)
    assert example.MODEL in {m.repo_id for m in model_list.models}
    info = example.Speaker._get_class_service_function().info()
    (mount,) = info.volumes
    assert mount == model_list.volume.mount
    assert info.volumes[mount].name == model_list.volume.name
    assert info.volumes[mount].read_only, "the inference side never writes the cache's volume"
    assert info.gpus


def test_it_finds_the_weights_the_cache_wrote(example: ModuleType, cli: Cli, repos: Repos, target: Path):
    with pytest.raises(ModelNotReady, match=r"run `python3 tools/nox_locked\.py -s download`"):
        example.find_weights(str(target), SMALL)
    assert cli("download", "--model", SMALL).returncode == 0
    found = example.find_weights(str(target), SMALL)
    assert found == model_dir(target, SMALL)
    assert_complete(target, SMALL, repos.files[SMALL])
    with pytest.raises(ModelNotReady, match="as asked"):
        example.find_weights(str(target), SMALL, "0" * 40)
