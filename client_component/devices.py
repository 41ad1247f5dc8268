"""Which devices TensorFlow trains on, said once at the start of a client's log.

On a GPU node the pod gets its GPU from the NVIDIA device plugin, which names it in
``NVIDIA_VISIBLE_DEVICES``; a CPU-only TensorFlow build then silently trains on the CPU. That
case gets a warning naming the fix (the ``-gpu`` image).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

log = logging.getLogger("client_component")
_NO_DEVICE = {"", "void", "none"}


def device_summary(names: Sequence[str], environ: Mapping[str, str] | None = None
                   ) -> tuple[str, str | None]:
    """The log line for TensorFlow's physical devices ``names`` (``/physical_device:GPU:0``),
    and a warning when the pod was given a GPU that TensorFlow does not see."""
    environ = os.environ if environ is None else environ
    short = [name.removeprefix("/physical_device:") for name in names]
    gpus = [name for name in short if name.startswith("GPU")]
    line = f"TensorFlow devices: {', '.join(short) or 'none'} (training on " \
           f"{'GPU' if gpus else 'CPU'})"
    given = environ.get("NVIDIA_VISIBLE_DEVICES", "").strip()
    if given.lower() not in _NO_DEVICE and not gpus:
        return line, (f"the pod was given GPU(s) {given!r} (NVIDIA_VISIBLE_DEVICES) but "
                      "TensorFlow sees none: run the client with a CUDA build, e.g. "
                      "client_image=tensorflow/tensorflow:<version>-gpu")
    return line, None


def log_devices() -> None:
    """Log the devices TensorFlow found, warning about an unused GPU."""
    import tensorflow as tf

    line, warning = device_summary([d.name for d in tf.config.list_physical_devices()])
    log.info(line)
    if warning:
        log.warning(warning)
