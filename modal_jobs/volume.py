"""The Modal Volume target."""

from modal_jobs.catalog import Catalog
from modal_jobs.errors import TargetError
from modal_jobs.hub import Hub
from modal_jobs.operations import Backend


def open_volume_backend(catalog: Catalog, hub: Hub) -> Backend:
    raise TargetError(f"the Modal Volume {catalog.volume.name!r} is not supported yet; pass --local-dir DIR")
