"""``make k8s-bin``: build the tests' Kubernetes control plane from Go modules.

kube-apiserver and kube-controller-manager come from the ``k8s.io/kubernetes`` module at one
pinned release, etcd from the ``go.etcd.io/etcd/server/v3`` version that release requires. The
kubernetes module lists its staging modules (``k8s.io/api``, ``k8s.io/client-go``, ...) at
``v0.0.0`` and replaces them with local directories; a scratch module replaces each with its
published ``v0.<minor>.<patch>``, the list generated from that go.mod in the module cache. Only
Go modules are downloaded (through the Go module proxy); the binaries go to
``~/.cache/fl-on-kubeflow/k8s/<version>/bin`` (``FL_K8S_CACHE`` overrides the root) and a
second call returns at once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

K8S_VERSION = "1.34.4"  # a release Kubeflow 1.10/1.11 clusters run; builds with Go 1.26
BINARIES = ("kube-apiserver", "kube-controller-manager", "etcd")
ETCD_MAIN = """package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""


class BuildError(RuntimeError):
    """Go is missing or a go command failed; the message says which."""


def cache_dir(version: str = K8S_VERSION) -> Path:
    root = os.environ.get("FL_K8S_CACHE") or Path.home() / ".cache" / "fl-on-kubeflow" / "k8s"
    return Path(root) / version


def binaries(version: str = K8S_VERSION) -> dict[str, Path] | None:
    """The built binaries, or None when any is missing."""
    paths = {name: cache_dir(version) / "bin" / name for name in BINARIES}
    return paths if all(p.is_file() for p in paths.values()) else None


def _go(*args: str, cwd: Path) -> str:
    result = subprocess.run(["go", *args], cwd=cwd, capture_output=True, text=True,
                            env={**os.environ, "GOFLAGS": "-mod=mod"})
    if result.returncode:
        raise BuildError(f"go {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def staging_replaces(kubernetes_go_mod: str, version: str) -> dict[str, str]:
    """``k8s.io/<staging> v0.0.0`` requirements of the kubernetes go.mod -> v0.<minor>."""
    published = "v0." + version.split(".", 1)[1]
    names = re.findall(r"^\s*(k8s\.io/[\w.\-/]+) v0\.0\.0\s*$", kubernetes_go_mod, re.M)
    return {name: published for name in sorted(set(names))}


def prepare_module(src: Path, version: str) -> None:
    src.mkdir(parents=True, exist_ok=True)
    if not (src / "go.mod").exists():
        _go("mod", "init", "fl-on-kubeflow/k8s-control-plane", cwd=src)
    info = json.loads(_go("mod", "download", "-json", f"k8s.io/kubernetes@v{version}", cwd=src))
    replaces = staging_replaces(Path(info["GoMod"]).read_text(), version)
    edits = [f"-replace={name}={name}@{ver}" for name, ver in replaces.items()]
    _go("mod", "edit", f"-require=k8s.io/kubernetes@v{version}", *edits, cwd=src)
    (src / "etcd").mkdir(exist_ok=True)
    (src / "etcd" / "main.go").write_text(ETCD_MAIN)
    _go("get", f"k8s.io/kubernetes/cmd/kube-apiserver@v{version}",
        f"k8s.io/kubernetes/cmd/kube-controller-manager@v{version}", cwd=src)


def build(version: str = K8S_VERSION) -> dict[str, Path]:
    found = binaries(version)
    if found:
        print(f"k8s-bin: Kubernetes {version} control plane already built in "
              f"{cache_dir(version) / 'bin'}")
        return found
    if shutil.which("go") is None:
        raise BuildError("go is not installed: the k8s tests need Go to build their control "
                         "plane (see README, Kubernetes tests)")
    src, out = cache_dir(version) / "src", cache_dir(version) / "bin"
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    prepare_module(src, version)
    print(f"k8s-bin: modules resolved in {time.monotonic() - started:.0f} s", flush=True)
    packages = {"kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
                "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
                "etcd": "./etcd"}
    for name, package in packages.items():
        step = time.monotonic()
        _go("build", "-o", str(out / f".{name}.tmp"), package, cwd=src)
        (out / f".{name}.tmp").rename(out / name)  # complete binaries only
        print(f"k8s-bin: built {name} in {time.monotonic() - step:.0f} s", flush=True)
    print(f"k8s-bin: Kubernetes {version} control plane in {out} "
          f"({time.monotonic() - started:.0f} s)")
    return binaries(version)


def main() -> int:
    try:
        build()
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
