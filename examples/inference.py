"""Qwen3-TTS on Modal, loading the weights the cache keeps on the volume: no download at start-up.

    modal run examples/inference.py --text "Hello from Qwen3-TTS." --ref-audio voice.wav --ref-text "…"

The volume is mounted read-only. `modal_jobs.reader.model_path` (standard library only, shipped
in the image with this package's source) returns the directory of the model's current revision,
or stops the container with one line naming the fix ("run `python3 tools/nox_locked.py -s download`").
Pin `COMMIT` (or ship `models.lock` and pass `lock=`) to refuse any other weights than those.
qwen-tts loads a local directory as it is: the model's files, and its speech tokenizer from the
model's own `speech_tokenizer/` folder (not from the separate Qwen3-TTS-Tokenizer-12Hz repo).

Memory snapshots (`SNAPSHOT`; Modal takes them for deployed apps only, not under `modal run`):
the first phase (`load_to_cpu`) runs once, before Modal snapshots the container. It imports torch
and qwen-tts, asks the reader for the weights and loads them to CPU memory, which the snapshot then
captures; without `enable_gpu_snapshot` (alpha, not used here) no GPU is visible in that phase,
and calling into `torch.cuda` there would leave CUDA believing there is none, so nothing in it
touches the GPU. A snapshot keeps what is in memory, not the volume's files: safetensors maps
the weight files, and a model loaded to CPU points into those mappings, so the weights are first
copied into the process's own memory (`own_memory`); a snapshot that kept the mappings would need
the revision's files at every restore, and the cache retires a revision at the update after next.
The load refuses to finish while any file of the volume is still open or mapped (`held_open`).

The second phase (`ready_on_gpu`) runs in every container, restored or not: it asks the reader
again (a few small files), because a snapshot taken before an update still holds the old
weights; when the current revision moved, it loads the new one instead (the log line says so;
redeploy to take a new snapshot). It then moves the model to the GPU, and reseeds torch, since
every container restored from one snapshot starts with the same random state. One line per start
says where the time went: the lookup, the load to CPU, the move to GPU, whether the container
was restored from a snapshot, and the total.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Generic, TypeVar

import modal

APP_NAME = "qwen3-tts-inference"
# As in models.toml: the volume the cache writes, where containers see it, and the model to load.
VOLUME_NAME = "qwen3-tts-models"
MOUNT = "/vol/models"
MODEL = "Qwen/Qwen3-TTS-12Hz-0.6B-Base"
COMMIT: str | None = None  # None: whatever revision the cache made current
GPU = "L4"
GPU_DEVICE = "cuda:0"
SNAPSHOT = True  # False: no memory snapshot, every container loads the weights from the volume
# qwen-tts pins its own torch and transformers; this release is the one the Qwen3-TTS README names.
QWEN_TTS = "qwen-tts==0.1.1"
# Modal sets it in every container; a restore sets it to the restored container's own task.
TASK_ID = "MODAL_TASK_ID"

image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install(QWEN_TTS, "soundfile")
    .env({"HF_HUB_OFFLINE": "1"})  # the weights come from the volume, never from the Hub
    .add_local_python_source("modal_jobs")  # for the reader; nothing else of the package is imported
)
volume = modal.Volume.from_name(VOLUME_NAME)  # the cache creates it; a missing volume fails the deploy
app = modal.App(APP_NAME, image=image)

Model = TypeVar("Model")


class VolumeStillOpen(RuntimeError):
    """The load left files of the volume open or mapped: a snapshot would need them at every restore."""


class Restore(Enum):
    """Whether this start came from a snapshot, and whether the snapshot's weights were still current."""

    NO = "no"
    YES = "yes"
    STALE = "yes, of an older revision: reloaded"


@dataclass(frozen=True)
class CpuLoad(Generic[Model]):
    """What the snapshot phase leaves: the model in CPU memory, where it came from, and what that cost."""

    model: Model
    weights: Path
    task: str | None  # the container that loaded it; another task id after the restore
    lookup: float
    load: float


@dataclass(frozen=True)
class StartTimes:
    """Where one container's start went, in seconds of this start's own work."""

    repo_id: str
    lookup: float
    load: float
    move: float
    restore: Restore
    snapshot_load: float  # the load to CPU the snapshot saved (0 when not restored)

    @property
    def total(self) -> float:
        return self.lookup + self.load + self.move

    def line(self) -> str:
        """The one line a start logs; compare deployments by it."""
        restored = self.restore.value
        if self.restore is Restore.YES:
            restored += f" (its load to CPU took {self.snapshot_load:.3f}s)"
        return (
            f"{self.repo_id} start: lookup {self.lookup:.3f}s, load to CPU {self.load:.3f}s, "
            f"move to GPU {self.move:.3f}s, restored from a snapshot: {restored}, total {self.total:.3f}s"
        )


def find_weights(mount: str = MOUNT, repo_id: str = MODEL, commit: str | None = COMMIT) -> Path:
    """The model's directory on the volume: complete, current, and at `commit` when one is pinned."""
    from modal_jobs.reader import model_path

    return model_path(mount, repo_id, commit)


def held_open(mount: str) -> list[str]:
    """The files under `mount` this process has open or mapped, read from Linux's /proc/self (none elsewhere)."""
    root = os.path.realpath(mount).rstrip(os.sep) + os.sep
    held: set[str] = set()
    fds = Path("/proc/self/fd")
    for fd in fds.iterdir() if fds.is_dir() else []:
        try:
            held.add(str(fd.readlink()))
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor)
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        maps = ""
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6:
            held.add(fields[5].removesuffix(" (deleted)"))
    return sorted(path for path in held if path.startswith(root))


def load_to_cpu(
    load: Callable[[Path], Model],
    mount: str = MOUNT,
    repo_id: str = MODEL,
    commit: str | None = COMMIT,
    clock: Callable[[], float] = time.perf_counter,
) -> CpuLoad[Model]:
    """The snapshot phase: the reader's lookup and the load to CPU, timed; no GPU, no network, only the volume."""
    started = clock()
    weights = find_weights(mount, repo_id, commit)
    found = clock()
    model = load(weights)
    loaded = clock()
    gc.collect()  # a mapping only a reference cycle still holds would otherwise count as held
    held = held_open(mount)
    if held:
        raise VolumeStillOpen(
            f"{repo_id}: {len(held)} file(s) of the volume still open or mapped after the load to CPU "
            f"({held[0]}); copy the weights into memory (own_memory) before a snapshot pins them"
        )
    return CpuLoad(model, weights, os.environ.get(TASK_ID), found - started, loaded - found)


def ready_on_gpu(
    cpu: CpuLoad[Model],
    load: Callable[[Path], Model],
    move: Callable[[Model], Model],
    mount: str = MOUNT,
    repo_id: str = MODEL,
    commit: str | None = COMMIT,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[Model, StartTimes]:
    """After the restore (or straight after `load_to_cpu` without one): current weights, moved to the GPU, timed."""
    model, lookup, load_time, restore, saved = cpu.model, cpu.lookup, cpu.load, Restore.NO, 0.0
    if os.environ.get(TASK_ID) != cpu.task:  # restored: this container did not run the load itself
        started = clock()
        weights = find_weights(mount, repo_id, commit)
        lookup, load_time, restore, saved = clock() - started, 0.0, Restore.YES, cpu.load
        if weights != cpu.weights:  # the cache moved on since the snapshot was taken
            started = clock()
            model = load(weights)
            load_time, restore, saved = clock() - started, Restore.STALE, 0.0
    started = clock()
    model = move(model)
    return model, StartTimes(repo_id, lookup, load_time, clock() - started, restore, saved)


def own_memory(module: Any) -> None:
    """Copy every weight out of the files safetensors mapped into memory of the process's own."""
    for tensor in (*module.parameters(), *module.buffers()):
        tensor.data = tensor.data.clone()  # a parameter shared by two layers is listed once: still shared


def load_tts(weights: Path) -> Any:
    """qwen-tts's model and speech tokenizer on CPU, in the process's own memory: nothing here touches CUDA."""
    import torch
    from qwen_tts import Qwen3TTSModel

    tts = Qwen3TTSModel.from_pretrained(str(weights), local_files_only=True, dtype=torch.bfloat16)
    own_memory(tts.model)
    own_memory(tts.model.speech_tokenizer.model)  # an attribute, not a submodule: moved on its own
    return tts


def move_tts(tts: Any) -> Any:
    """The model and its speech tokenizer on the GPU; qwen-tts keeps the device in three places."""
    import torch

    device = torch.device(GPU_DEVICE)
    tts.model.to(device)
    tts.model.speech_tokenizer.model.to(device)
    tts.device = tts.model.speech_tokenizer.device = device
    torch.seed()  # containers restored from one snapshot would otherwise sample alike
    return tts


@app.cls(
    gpu=GPU,
    volumes={MOUNT: volume.read_only()},
    enable_memory_snapshot=SNAPSHOT,
    timeout=10 * 60,
    scaledown_window=5 * 60,
)
class Speaker:
    @modal.enter(snap=SNAPSHOT)
    def load_weights(self) -> None:
        """Before the snapshot: the weights found through the reader and loaded to CPU."""
        self.cpu = load_to_cpu(load_tts, MOUNT, MODEL, COMMIT)

    @modal.enter(snap=False)
    def to_gpu(self) -> None:
        """In every container: the current weights on the GPU, and the start's one line."""
        self.model, times = ready_on_gpu(self.cpu, load_tts, move_tts, MOUNT, MODEL, COMMIT)
        del self.cpu
        print(times.line(), flush=True)

    @modal.method()
    def speak(self, text: str, ref_audio: bytes, ref_text: str, language: str = "English") -> bytes:
        """A WAV of `text` in the voice of `ref_audio` (the Base models clone a voice from a short sample)."""
        import io
        import tempfile

        import soundfile

        with tempfile.NamedTemporaryFile(suffix=".wav") as sample:
            sample.write(ref_audio)
            sample.flush()
            wavs, rate = self.model.generate_voice_clone(
                text=text, language=language, ref_audio=sample.name, ref_text=ref_text
            )
        out = io.BytesIO()
        soundfile.write(out, wavs[0], rate, format="WAV")
        return out.getvalue()


@app.local_entrypoint()
def main(text: str, ref_audio: str, ref_text: str, out: str = "speech.wav") -> None:
    wav = Speaker().speak.remote(text, Path(ref_audio).read_bytes(), ref_text)
    Path(out).write_bytes(wav)
    print(f"wrote {out} ({len(wav)} bytes)")
