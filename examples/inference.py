"""Qwen3-TTS on Modal, loading the weights the cache keeps on the volume: no download at start-up.

    modal run examples/inference.py --text "Hello from Qwen3-TTS." --ref-audio voice.wav --ref-text "…"

The volume is mounted read-only. `modal_jobs.reader.model_path` (standard library only, shipped
in the image with this package's source) returns the directory of the model's current revision,
or stops the container with one line naming the fix ("run `python3 tools/nox_locked.py -s download`").
Pin `COMMIT` (or ship `models.lock` and pass `lock=`) to refuse any other weights than those.
"""

from __future__ import annotations

from pathlib import Path

import modal

APP_NAME = "qwen3-tts-inference"
# As in models.toml: the volume the cache writes, where containers see it, and the model to load.
VOLUME_NAME = "qwen3-tts-models"
MOUNT = "/vol/models"
MODEL = "Qwen/Qwen3-TTS-12Hz-0.6B-Base"
COMMIT: str | None = None  # None: whatever revision the cache made current
GPU = "L4"
# qwen-tts pins its own torch and transformers; this release is the one the Qwen3-TTS README names.
QWEN_TTS = "qwen-tts==0.1.1"

image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install(QWEN_TTS, "soundfile")
    .env({"HF_HUB_OFFLINE": "1"})  # the weights come from the volume, never from the Hub
    .add_local_python_source("modal_jobs")  # for the reader; nothing else of the package is imported
)
volume = modal.Volume.from_name(VOLUME_NAME)  # the cache creates it; a missing volume fails the deploy
app = modal.App(APP_NAME, image=image)


def find_weights(mount: str = MOUNT, repo_id: str = MODEL, commit: str | None = COMMIT) -> Path:
    """The model's directory on the volume: complete, current, and at `commit` when one is pinned."""
    from modal_jobs.reader import model_path

    return model_path(mount, repo_id, commit)


@app.cls(gpu=GPU, volumes={MOUNT: volume.read_only()}, timeout=10 * 60, scaledown_window=5 * 60)
class Speaker:
    @modal.enter()
    def load(self) -> None:
        import torch
        from qwen_tts import Qwen3TTSModel

        weights = find_weights()
        print(f"loading {MODEL} from {weights}")
        self.model = Qwen3TTSModel.from_pretrained(
            str(weights), local_files_only=True, device_map="cuda:0", dtype=torch.bfloat16
        )

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
