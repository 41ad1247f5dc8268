"""``data_uri`` resolution: a local path or mounted volume as is, an http(s) URL downloaded
once into a cache (atomically, with an optional sha256 check)."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from urllib.parse import urlsplit

import requests

from client_component.datasets.base import DatasetError

log = logging.getLogger(__name__)
CACHE_ENV = "FL_DATA_CACHE"


def resolve_uri(uri: str, sha256: str = "") -> str:
    """A local path for ``uri``; downloads URLs once; verifies ``sha256`` when given."""
    if urlsplit(uri).scheme in ("http", "https"):
        path = _download(uri, sha256)
    else:
        path = Path(uri)
        if not path.exists():
            raise DatasetError(f"data not found: {uri!r}")
        if sha256 and path.is_file():
            _verify(path, sha256, uri)
    return str(path)


def _cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "fl-on-kubeflow" / "data"))


def _download(url: str, sha256: str) -> Path:
    name = Path(urlsplit(url).path).name or "data"
    target = _cache_dir() / hashlib.sha256(url.encode()).hexdigest()[:16] / name
    if target.exists():
        if sha256:
            _verify(target, sha256, url)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{name}.part")
    try:
        with requests.get(url, stream=True, timeout=60) as response:
            response.raise_for_status()
            with open(tmp, "wb") as handle:
                for chunk in response.iter_content(1 << 20):
                    handle.write(chunk)
        if sha256:
            _verify(tmp, sha256, url)
        os.replace(tmp, target)
    except requests.RequestException as exc:
        raise DatasetError(f"cannot download {url}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    log.info("event=downloaded url=%s path=%s", url, target)
    return target


def _verify(path: Path, sha256: str, source: str) -> None:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != sha256.lower():
        raise DatasetError(f"{source}: sha256 {digest.hexdigest()} does not match the "
                           f"expected {sha256}")
