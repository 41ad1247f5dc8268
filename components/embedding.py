"""``runtime_component``: ``@dsl.component`` with our runtime packages embedded, reproducibly.

KFP's ``embedded_artifact_path`` tars a directory into the component at decoration time. Its
archive carries file mtimes, owners and a gzip timestamp, so two compiles of the same source
would differ; we stage only the packages' ``.py`` files and rewrite the archive with fixed
metadata, so that ``compiled/fl_pipeline.yaml`` is a pure function of the source.

The archive travels inside one command-line argument of the pod, and Linux refuses any single
argument over 128 KiB (``MAX_ARG_STRLEN``: the pod fails with "argument list too long"), so it
is recompressed with xz (a fifth smaller than gzip) and KFP's loader told so.
"""

from __future__ import annotations

import base64
import io
import lzma
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from kfp import dsl

REPO_ROOT = Path(__file__).resolve().parent.parent
_ARCHIVE = re.compile(r"__KFP_EMBEDDED_ARCHIVE_B64 = '([A-Za-z0-9+/=]+)'")
_GZIP_LOADER, _XZ_LOADER = "mode='r:gz'", "mode='r:xz'"


def runtime_component(packages: Sequence[str], **component_kwargs) -> Callable:
    """Decorate a component function, embedding the named top-level packages."""

    def decorate(func: Callable):
        with tempfile.TemporaryDirectory(prefix="fl-embed-") as staging:
            for package in packages:
                shutil.copytree(REPO_ROOT / package, Path(staging) / package,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            component = dsl.component(func, embedded_artifact_path=staging, **component_kwargs)
        container = component.component_spec.implementation.container
        container.command = [_reproducible(part) for part in container.command]
        return component

    return decorate


def embedded_files(component) -> dict[str, bytes]:
    """The files a component carries, by archive path (for tests and inspection)."""
    source = component.component_spec.implementation.container.command[-1]
    match = _ARCHIVE.search(source)
    if match is None:
        return {}
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(match.group(1))), mode="r:xz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def _reproducible(command_part: str) -> str:
    if not _ARCHIVE.search(command_part):
        return command_part
    if command_part.count(_GZIP_LOADER) != 1:
        raise RuntimeError("KFP's embedded-archive loader changed: cannot switch it to xz")
    command_part = command_part.replace(_GZIP_LOADER, _XZ_LOADER)
    return _ARCHIVE.sub(lambda m: f"__KFP_EMBEDDED_ARCHIVE_B64 = '{_normalize(m.group(1))}'",
                        command_part)


def _normalize(archive_b64: str) -> str:
    """Re-pack the archive with sorted members, zero times and owners, and no gzip mtime."""
    source = tarfile.open(fileobj=io.BytesIO(base64.b64decode(archive_b64)), mode="r:gz")
    out = io.BytesIO()
    with source, tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in sorted(source.getmembers(), key=lambda m: m.name):
            data = source.extractfile(member).read() if member.isfile() else None
            member.mtime, member.uid, member.gid, member.uname, member.gname = 0, 0, 0, "", ""
            member.mode = 0o755 if member.isdir() else 0o644
            member.pax_headers = {}
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    compressed = lzma.compress(out.getvalue(), preset=9 | lzma.PRESET_EXTREME)
    return base64.b64encode(compressed).decode("ascii")
