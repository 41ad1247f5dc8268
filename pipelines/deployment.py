"""Settings of the pipeline itself rather than of a runtime: the volumes a run creates or
mounts. Defined like the runtimes' settings (``contract.settings``), so that they become
pipeline parameters, argument checks and README rows the same way."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from contract.settings import setting

_QUANTITY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")


def kubernetes_quantity(name: str, value: Any) -> str | None:
    """Refuse what Kubernetes would not take as a storage size."""
    if _QUANTITY.match(str(value)):
        return None
    return f"{name} {value!r} is not a Kubernetes quantity (e.g. 1Gi, 500Mi)"


@dataclass(frozen=True)
class DeploymentConfig:
    """The run's volumes."""

    data_pvc: str = setting("", "PersistentVolumeClaim holding the clients' data, mounted "
                            "at /fl/data in every client (data_uri then names a path inside "
                            "it); empty: no data volume")
    checkpoint_size: str = setting("1Gi", "size of the aggregator's checkpoint volume",
                                   check=kubernetes_quantity)
