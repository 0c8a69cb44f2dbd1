"""The inference example, offline: its Modal footprint, its snapshot phase and the line each start logs.

No GPU, torch or model download: the class is read through `Function.info()` and the options the
client sends, and the example's own phases run here against a target the cache wrote from the
local hub, with test doubles for qwen-tts and torch that read the files as qwen-tts 0.1.1 does.
"""

from __future__ import annotations

import json
import mmap
import os
import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from modal._partial_function import _find_callables_for_obj, _PartialFunctionFlags
from modal._utils.async_utils import synchronizer

from local_hub.server import LocalHub, hub_env
from modal_jobs.model_list import load_model_list
from modal_jobs.reader import ModelNotReady
from tests.conftest import BIG, MODEL_LIST, ROOT, SMALL, TOKENIZER, Cli, Repos, assert_complete, model_dir, repo_files

EXAMPLE = ROOT / "examples" / "inference.py"


def load_example(name: str = "qwen3_tts_inference_example", snapshot: bool = True) -> ModuleType:
    """The example as `modal run examples/inference.py` loads it: a file, not a package's module."""
    if name in sys.modules:
        return sys.modules[name]
    source = EXAMPLE.read_text()
    if not snapshot:  # what a user who turns snapshots off edits
        assert "\nSNAPSHOT = True" in source
        source = source.replace("\nSNAPSHOT = True", "\nSNAPSHOT = False")
    module = ModuleType(name)
    module.__file__ = str(EXAMPLE)
    sys.modules[name] = module
    exec(compile(source, EXAMPLE, "exec"), module.__dict__)  # noqa: S102 - the example's own source
    return module


@pytest.fixture(scope="module")
def example() -> ModuleType:
    return load_example()


# -- test doubles for qwen-tts and torch -----------------------------------------------------


class Weights:
    """A weight file's bytes as safetensors gives them to torch on CPU: a private mapping of the file, not a copy."""

    def __init__(self, buffer: mmap.mmap | bytes) -> None:
        self.buffer = buffer

    @classmethod
    def mapped(cls, path: Path) -> Weights:
        with path.open("rb") as file:
            return cls(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY))

    def clone(self) -> Weights:
        return Weights(bytes(self.buffer))


@dataclass
class Tensor:
    data: Weights


@dataclass
class Module:
    """An nn.Module as far as the example touches it."""

    weights: list[Tensor]
    gpu: list[str]
    speech_tokenizer: Any = None

    def parameters(self) -> Iterator[Tensor]:
        return iter(self.weights)

    def buffers(self) -> Iterator[Tensor]:
        return iter(())

    def to(self, device: str) -> Module:
        self.gpu.append(f"to {device}")
        return self


@dataclass
class QwenTTS:
    """The stand-ins' record: what was loaded, with which options, and every call that would reach a GPU."""

    loads: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    gpu: list[str] = field(default_factory=list)
    seeds: int = 0

    def from_pretrained(self, path: str, **kwargs: Any) -> Any:
        """Reads a local directory as qwen-tts 0.1.1 does: the model, then its own `speech_tokenizer/`."""
        model_dir = Path(path)
        self.loads.append((model_dir, kwargs))
        json.loads((model_dir / "config.json").read_bytes())
        json.loads((model_dir / "generation_config.json").read_bytes())
        json.loads((model_dir / "speech_tokenizer" / "config.json").read_bytes())
        tokenizer = Module([Tensor(Weights.mapped(model_dir / "speech_tokenizer" / "model.safetensors"))], self.gpu)
        model = Module([Tensor(Weights.mapped(model_dir / "model.safetensors"))], self.gpu)
        model.speech_tokenizer = types.SimpleNamespace(model=tokenizer, device="cpu")
        return types.SimpleNamespace(model=model, device="cpu")

    def torch(self) -> ModuleType:
        record = self

        class Torch(ModuleType):
            bfloat16 = "bfloat16"

            def device(self, name: str) -> str:
                record.gpu.append(f"device {name}")
                return name

            def seed(self) -> int:
                record.seeds += 1
                return record.seeds

            def __getattr__(self, name: str) -> Any:  # torch.cuda and anything else the example should not touch
                if not name.startswith("__"):
                    record.gpu.append(name)
                raise AttributeError(name)

        return Torch("torch")


def stand_in_qwen_tts(monkeypatch: pytest.MonkeyPatch) -> QwenTTS:
    """qwen-tts and torch as the example imports them, for the rest of the test."""
    stand_in = QwenTTS()
    package = ModuleType("qwen_tts")
    package.Qwen3TTSModel = types.SimpleNamespace(from_pretrained=stand_in.from_pretrained)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "qwen_tts", package)
    monkeypatch.setitem(sys.modules, "torch", stand_in.torch())
    return stand_in


@pytest.fixture
def qwen_tts(monkeypatch: pytest.MonkeyPatch) -> QwenTTS:
    return stand_in_qwen_tts(monkeypatch)


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A target the cache wrote, shared by the tests that only read it: the 0.6B model, from a local hub."""
    root = tmp_path_factory.mktemp("cached")
    with LocalHub(root / "hub-data") as hub:
        for seed, repo_id in enumerate((BIG, SMALL, TOKENIZER)):
            hub.commit(repo_id, repo_files(repo_id, seed, 300_000))
        (root / "models.toml").write_text(MODEL_LIST)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MODAL_", "GITHUB_"))}
        env.update(hub_env(hub, root / "hf-home"), PYTHONPATH=str(ROOT))
        cli = Cli(hub, root / "models.toml", root / "volume", env)
        result = cli("download", "--model", SMALL)
    assert result.returncode == 0, result.stderr
    return cli.target


# -- what a phase opens and connects to ------------------------------------------------------


@dataclass
class Watch:
    """The files this thread opens and the connections it makes while on: an audit hook (PEP 578), one per process."""

    on: bool = False
    installed: bool = False
    thread: int = 0
    opened: list[tuple[str, str]] = field(default_factory=list)
    network: list[str] = field(default_factory=list)

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.on or threading.get_ident() != self.thread:
            return
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            self.opened.append((os.fsdecode(args[0]), writes(args[1], args[2])))
        elif event.startswith("socket.") and event != "socket.__new__":
            self.network.append(f"{event} {args!r}")


def writes(mode: object, flags: object) -> str:
    by_mode = isinstance(mode, str) and any(c in mode for c in "wax+")
    by_flags = isinstance(flags, int) and bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
    return "writes" if by_mode or by_flags else "reads"


WATCH = Watch()


@contextmanager
def watched() -> Iterator[Watch]:
    if not WATCH.installed:  # a hook cannot be removed: this one only records, and only while a test turns it on
        sys.addaudithook(WATCH)
        WATCH.installed = True
    WATCH.opened.clear()
    WATCH.network.clear()
    WATCH.thread, WATCH.on = threading.get_ident(), True
    try:
        yield WATCH
    finally:
        WATCH.on = False


# -- the tests -------------------------------------------------------------------------------


def options(cls: Any) -> dict[str, Any]:
    """The options modal 1.6 sends for the class's container, kept in its loader's closure (FunctionInfo has none)."""
    function = synchronizer._translate_in(cls._get_class_service_function())  # type: ignore[no-untyped-call]
    loader = function._load
    cells = dict(zip(loader.__code__.co_freevars, loader.__closure__ or (), strict=True))
    return {name: cells[name].cell_contents for name in ("enable_memory_snapshot", "experimental_options")}


def phases(cls: Any) -> tuple[list[str], list[str]]:
    """The enter methods Modal's container runs before the snapshot and after it, found as its runtime finds them."""
    instance = cls._get_user_cls()()
    before = _find_callables_for_obj(instance, _PartialFunctionFlags.ENTER_PRE_SNAPSHOT)
    after = _find_callables_for_obj(instance, _PartialFunctionFlags.ENTER_POST_SNAPSHOT)
    return list(before), list(after)


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


def test_snapshots_are_on_the_load_before_them_and_the_move_after(example: ModuleType):
    assert options(example.Speaker) == {"enable_memory_snapshot": True, "experimental_options": {}}
    assert phases(example.Speaker) == (["load_weights"], ["to_gpu"])


def test_the_flag_turns_snapshots_off_and_both_phases_run_at_every_start():
    plain = load_example("qwen3_tts_inference_example_without_snapshots", snapshot=False)
    assert options(plain.Speaker)["enable_memory_snapshot"] is False
    assert phases(plain.Speaker) == ([], ["load_weights", "to_gpu"])


def test_it_finds_the_weights_the_cache_wrote(example: ModuleType, cli: Cli, repos: Repos, target: Path):
    with pytest.raises(ModelNotReady, match=r"run `python3 tools/nox_locked\.py -s download`"):
        example.find_weights(str(target), SMALL)
    assert cli("download", "--model", SMALL).returncode == 0
    found = example.find_weights(str(target), SMALL)
    assert found == model_dir(target, SMALL)
    assert_complete(target, SMALL, repos.files[SMALL])
    with pytest.raises(ModelNotReady, match="as asked"):
        example.find_weights(str(target), SMALL, "0" * 40)


def test_the_snapshot_phase_reads_only_the_volume_and_never_the_gpu(
    example: ModuleType, cached: Path, qwen_tts: QwenTTS
):
    target = cached
    with watched() as watch:
        cpu = example.load_to_cpu(example.load_tts, str(target), SMALL, None)
    assert watch.network == []
    assert qwen_tts.gpu == [], "before a snapshot, CUDA would be initialised with no GPU"
    inside = [str(target), "/proc/self/"]
    assert [(path, how) for path, how in watch.opened if how != "reads" or not path.startswith(tuple(inside))] == []
    weights = model_dir(target, SMALL)
    assert {path for path, _ in watch.opened if path.startswith(str(target))} >= {
        str(weights / "model.safetensors"),
        str(weights / "speech_tokenizer" / "model.safetensors"),
    }
    ((loaded, kwargs),) = qwen_tts.loads
    assert loaded == cpu.weights == weights
    assert kwargs == {"local_files_only": True, "dtype": "bfloat16"}, "no device_map: qwen-tts loads to CPU"
    assert example.held_open(str(target)) == []

    tts, times = example.ready_on_gpu(cpu, example.load_tts, example.move_tts, str(target), SMALL, None)
    assert qwen_tts.gpu == ["device cuda:0", "to cuda:0", "to cuda:0"]
    assert (tts.device, tts.model.speech_tokenizer.device, qwen_tts.seeds) == ("cuda:0", "cuda:0", 1)
    assert times.restore is example.Restore.NO


def test_a_load_that_leaves_the_volume_mapped_is_refused_before_the_snapshot(
    example: ModuleType, cached: Path, qwen_tts: QwenTTS
):
    """Without the copy into the process's own memory, a snapshot would pin the revision's files."""
    target = cached
    weights = model_dir(target, SMALL)
    with pytest.raises(example.VolumeStillOpen, match=f"{SMALL}: 2 file.*{weights}.*own_memory"):
        example.load_to_cpu(lambda path: qwen_tts.from_pretrained(str(path)), str(target), SMALL, None)
    with (weights / "config.json").open("rb"):
        assert example.held_open(str(target)) == [str(weights / "config.json")]
    assert example.held_open(str(target)) == []


def ticks() -> Any:
    """A clock that moves one second per reading: the phases' arithmetic, with no timing in the test."""
    now = iter(range(1000))
    return lambda: float(next(now))


def test_a_start_says_where_its_time_went_restored_or_not(
    example: ModuleType, cached: Path, qwen_tts: QwenTTS, monkeypatch: pytest.MonkeyPatch
):
    where = (str(cached), SMALL, None)
    monkeypatch.setenv(example.TASK_ID, "ta-made-the-snapshot")
    cpu = example.load_to_cpu(example.load_tts, *where, clock=ticks())
    _, first = example.ready_on_gpu(cpu, example.load_tts, example.move_tts, *where, clock=ticks())
    assert (first.lookup, first.load, first.move, first.total, first.restore) == (1, 1, 1, 3, example.Restore.NO)
    assert first.line() == (
        f"{SMALL} start: lookup 1.000s, load to CPU 1.000s, move to GPU 1.000s, "
        "restored from a snapshot: no, total 3.000s"
    )

    monkeypatch.setenv(example.TASK_ID, "ta-restored")
    tts, restored = example.ready_on_gpu(cpu, example.load_tts, example.move_tts, *where, clock=ticks())
    assert tts is cpu.model and len(qwen_tts.loads) == 1, "a restored start does not load again"
    assert (restored.lookup, restored.load, restored.move, restored.total) == (1, 0, 1, 2)
    assert "load to CPU 0.000s" in restored.line()
    assert "restored from a snapshot: yes (its load to CPU took 1.000s), total 2.000s" in restored.line()


def test_a_snapshot_older_than_the_caches_update_loads_the_current_revision(
    example: ModuleType, cli: Cli, repos: Repos, target: Path, qwen_tts: QwenTTS, monkeypatch: pytest.MonkeyPatch
):
    assert cli("download", "--model", SMALL).returncode == 0
    monkeypatch.setenv(example.TASK_ID, "ta-made-the-snapshot")
    cpu = example.load_to_cpu(example.load_tts, str(target), SMALL, None)
    cli.hub.commit(SMALL, {**repos.files[SMALL], "config.json": b'{"v": 2}'})
    assert cli("lock", "--upgrade", local=False).returncode == 0
    assert cli("download", "--model", SMALL).returncode == 0
    monkeypatch.setenv(example.TASK_ID, "ta-restored-after-the-update")
    tts, times = example.ready_on_gpu(cpu, example.load_tts, example.move_tts, str(target), SMALL, None)
    assert model_dir(target, SMALL) != cpu.weights
    assert [path for path, _ in qwen_tts.loads] == [cpu.weights, model_dir(target, SMALL)]
    assert tts is not cpu.model
    assert times.restore is example.Restore.STALE
    assert "restored from a snapshot: yes, of an older revision: reloaded" in times.line()


def test_the_class_runs_its_phases_as_modal_does_and_logs_one_line(
    example: ModuleType,
    cached: Path,
    qwen_tts: QwenTTS,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    monkeypatch.setattr(example, "MOUNT", str(cached))
    monkeypatch.setattr(example, "MODEL", SMALL)
    speaker = example.Speaker._get_user_cls()()
    for flag in (_PartialFunctionFlags.ENTER_PRE_SNAPSHOT, _PartialFunctionFlags.ENTER_POST_SNAPSHOT):
        for enter in _find_callables_for_obj(speaker, flag).values():
            enter()
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(f"{SMALL} start: lookup ") and "restored from a snapshot: no, total " in line
    assert speaker.model.device == "cuda:0" and not hasattr(speaker, "cpu")
