"""Twin targets: one local directory and one stand-in volume over an identical copy, driven the same way.

Every operation runs through `modal_jobs.operations.run` on both; their summaries, normalized
(target and paths as `<target>`, time left out), must agree. The volume's containers run in-process
(`tests.modal_stand_ins.InProcessContainers`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from local_hub.server import LocalHub, hub_env
from modal_jobs.backend import Backend, LocalBackend
from modal_jobs.errors import CacheError
from modal_jobs.hub import Hub
from modal_jobs.modal_backend import ModalBackend
from modal_jobs.model_list import ModelList, VolumeSpec
from modal_jobs.operations import run
from modal_jobs.request import Request
from modal_jobs.summary import Operation, Summary, render_text
from modal_jobs.volume import VolumeStore
from modal_jobs.volume_lease import VolumeLease
from tests.modal_dict_stand_in import DictServer
from tests.modal_stand_ins import MOUNT, DirVolume, InProcessContainers, VolumeRecorder


@dataclass
class Twins:
    """One local directory and one stand-in volume over an identical copy, driven the same way."""

    local_root: Path
    volume_root: Path
    hub: Hub
    containers: InProcessContainers
    model_list: ModelList
    writers: DictServer = field(default_factory=DictServer)  # the Dict the volume's writer leases live in

    def backends(self) -> tuple[LocalBackend, ModalBackend]:
        store = VolumeStore(DirVolume(self.volume_root), VolumeSpec(mount=MOUNT))
        return LocalBackend(self.local_root, self.hub), ModalBackend(store, self.containers, self.lease())

    def lease(self, machine: str = "twins", dict_server: DictServer | None = None, **options: Any) -> VolumeLease:
        """The volume's writer lease as `machine` takes it, in the Dict every machine of the test shares
        (or in another one: a lease that does not keep this machine apart from the others)."""
        server = dict_server or self.writers
        return VolumeLease(VolumeSpec().name, server.opener(machine), **{"poll": 0.01, **options})

    def run(self, operation: str, **options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Both summaries, normalized: target and paths as `<target>`, time left out."""
        request = Request(Operation(operation), **options)
        local, volume = self.backends()
        return (
            normalize(run(request, self.model_list, local, self.hub), self.local_root),
            normalize(run(request, self.model_list, volume, self.hub), self.volume_root),
        )

    def error(self, operation: str, **options: Any) -> tuple[str, str]:
        messages = []
        backends: tuple[Backend, Backend] = self.backends()
        for backend, root in zip(backends, (self.local_root, self.volume_root), strict=True):
            with pytest.raises(CacheError) as caught:
                run(Request(Operation(operation), **options), self.model_list, backend, self.hub)
            messages.append(str(caught.value).replace(MOUNT, "<target>").replace(str(root), "<target>"))
        return messages[0], messages[1]

    def change(self, edit: Callable[[Path], None]) -> None:
        edit(self.local_root)
        edit(self.volume_root)


def normalize(summary: Summary, root: Path) -> dict[str, Any]:
    def where(path: str) -> str:
        return path.replace(MOUNT, "<target>").replace(str(root), "<target>")

    data = summary.to_dict()
    data["target"] = where(data["target"])
    for row in data["models"]:
        row["path"] = where(row["path"])
        row["error"] = where(row["error"]) if row["error"] else None
        del row["seconds"]
    for orphan in data["orphans"]:
        orphan["path"] = where(orphan["path"])
    data["text"] = where(render_text(summary))
    return data


def stand_in(hub: LocalHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_list: ModelList) -> Twins:
    """An empty local directory and an empty stand-in volume under tmp_path, driven through `model_list`.

    The environment is what a container sees: the local hub as HF_ENDPOINT (read by `Hub()`), its
    own HF_HOME, no token. The list's path must be under tmp_path: a download writes models.lock beside it.
    """
    for key, value in hub_env(hub, tmp_path / "hf-home").items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    volume_root = tmp_path / "volume"
    volume_root.mkdir()
    containers = InProcessContainers(volume_root, VolumeRecorder(volume_root))
    return Twins(tmp_path / "local", volume_root, Hub(endpoint=hub.url), containers, model_list)
