"""A real Kubernetes control plane on loopback for the tests: etcd, kube-apiserver (RBAC,
token auth, service-account tokens) and kube-controller-manager with only the controllers the
tests need. No nodes: pods are objects whose status the tests patch, as a kubelet would.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ADMIN_TOKEN_USER = "fl-test-admin"
CONTROLLERS = ("serviceaccount-controller", "serviceaccount-token-controller",
               "endpointslice-controller", "persistentvolumeclaim-protection-controller")
READY_TIMEOUT_S = 120


class ControlPlaneError(RuntimeError):
    """A control-plane process did not come up; carries the tail of its log."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class ControlPlane:
    """The processes, their temp dir and how to reach the API server."""

    bin_dir: Path
    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fl-k8s-")))
    procs: list[subprocess.Popen] = field(default_factory=list)
    url: str = ""
    admin_token: str = "fl-admin-token"
    started_s: float = 0.0

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self) -> ControlPlane:
        begin = time.monotonic()
        try:
            etcd_url = self._start_etcd()
            self._write_credentials()
            self._start_apiserver(etcd_url)
            self._wait_ready()
            self._start_controller_manager()
        except BaseException:
            self.stop()
            raise
        self.started_s = time.monotonic() - begin
        return self

    def stop(self) -> None:
        """Stop every process (controller manager first, etcd last), remove the temp dir."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()
        shutil.rmtree(self.work, ignore_errors=True)

    # ---- clients ------------------------------------------------------------------------

    def kubeconfig(self, token: str, name: str) -> Path:
        """A kubeconfig for ``token`` (verifying the API server's self-signed certificate)."""
        path = self.work / f"{name}.kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": name,
            "clusters": [{"name": "fl-test", "cluster": {
                "server": self.url, "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": "fl-test", "user": name}}],
        }))
        return path

    @property
    def ca_file(self) -> Path:
        return self.work / "certs" / "apiserver.crt"

    # ---- internals ----------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def _log_tail(self, name: str) -> str:
        path = self.work / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def _start_etcd(self) -> str:
        client, peer = free_port(), free_port()
        url = f"http://127.0.0.1:{client}"
        self._spawn("etcd", [
            str(self.bin_dir / "etcd"), "--name", "fl-test", "--data-dir",
            str(self.work / "etcd"), "--listen-client-urls", url, "--advertise-client-urls",
            url, "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"fl-test=http://127.0.0.1:{peer}", "--log-level", "warn",
            "--unsafe-no-fsync"])
        self._wait(lambda: requests.get(f"{url}/health", timeout=2).ok, "etcd")
        return url

    def _write_credentials(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.work / "sa.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        (self.work / "sa.pub").write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        (self.work / "tokens.csv").write_text(
            f'{self.admin_token},{ADMIN_TOKEN_USER},{ADMIN_TOKEN_USER},"system:masters"\n')

    def _start_apiserver(self, etcd_url: str) -> None:
        port = free_port()
        self.url = f"https://127.0.0.1:{port}"
        self._spawn("kube-apiserver", [
            str(self.bin_dir / "kube-apiserver"), "--etcd-servers", etcd_url,
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            "--secure-port", str(port), "--cert-dir", str(self.work / "certs"),
            "--token-auth-file", str(self.work / "tokens.csv"),
            "--authorization-mode", "RBAC",
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(self.work / "sa.pub"),
            "--service-account-signing-key-file", str(self.work / "sa.key"),
            "--service-cluster-ip-range", "10.96.0.0/16", "--allow-privileged=false",
            "--enable-priority-and-fairness=false"])

    def _wait_ready(self) -> None:
        headers = {"Authorization": f"Bearer {self.admin_token}"}

        def ready() -> bool:
            return requests.get(f"{self.url}/readyz", headers=headers, timeout=2,
                                verify=False).ok  # noqa: S501 - waiting for its cert

        self._wait(ready, "kube-apiserver")

    def _start_controller_manager(self) -> None:
        admin = self.kubeconfig(self.admin_token, "admin")
        self._spawn("kube-controller-manager", [
            str(self.bin_dir / "kube-controller-manager"), "--kubeconfig", str(admin),
            "--controllers", ",".join(CONTROLLERS), "--leader-elect=false",
            "--bind-address", "127.0.0.1", "--secure-port", str(free_port()),
            "--service-account-private-key-file", str(self.work / "sa.key"),
            "--root-ca-file", str(self.ca_file), "--use-service-account-credentials=false"])

    def _wait(self, probe, name: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                raise ControlPlaneError(f"{name} exited:\n{self._log_tail(name)}")
            try:
                if probe():
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise ControlPlaneError(f"{name} not ready in {READY_TIMEOUT_S} s:\n"
                                f"{self._log_tail(name)}")
