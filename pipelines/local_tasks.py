"""Running one compiled container task on this machine, as the KFP launcher would in a pod.

The task's compiled ``command``/``args`` run as a subprocess with ``{{$}}`` replaced by an
executor-input JSON; the runtime ``pip install`` step is skipped when the packages it names
are already installed here. Kubernetes Service tasks have loopback substitutes (see
``LOOPBACK_TASKS``): locally the aggregator listens on 127.0.0.1 and needs no Service.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from pipelines.kfp_driver import DriverError, collect_output_parameters

EXECUTOR_INPUT_PLACEHOLDER = "{{$}}"
# Locally an HTML or Markdown artifact gets its extension, so that a browser opens it as such.
_SUFFIXES = {"system.HTML": ".html", "system.Markdown": ".md"}
_QUOTED = re.compile(r"'([^']+)'")


class TaskFailed(RuntimeError):
    """A task exited non-zero (after its retries); carries its name and log."""

    def __init__(self, task: str, exit_code: int, log_path: Path) -> None:
        tail = _tail(log_path)
        super().__init__(f"task {task} failed with exit code {exit_code}; log {log_path}:\n{tail}")
        self.task, self.exit_code, self.log_path = task, exit_code, log_path


@dataclass
class TaskContext:
    """Everything a container task needs besides its spec: where to write, env, identity."""

    run_id: str
    namespace: str
    run_dir: Path
    extra_env: Mapping[str, str] = field(default_factory=dict)
    on_line: Callable[[str, str], None] = lambda task, line: None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    cancelled: threading.Event = field(default_factory=threading.Event)


def executor_input(parameters: Mapping[str, Any], component: Mapping[str, Any],
                   task_dir: Path, input_artifacts: Mapping[str, dict] | None = None
                   ) -> dict[str, Any]:
    """The JSON the KFP launcher hands the executor: inputs, and where outputs go."""
    outputs = component.get("outputDefinitions", {})
    input_specs = component.get("inputDefinitions", {}).get("artifacts", {})
    inputs: dict[str, Any] = {"parameterValues": dict(parameters)}
    if input_artifacts:
        inputs["artifacts"] = {name: {"artifacts": [{
            "name": name, "uri": artifact["uri"], "metadata": artifact.get("metadata", {}),
            "type": {"schemaTitle": input_specs[name]["artifactType"]["schemaTitle"]},
        }]} for name, artifact in input_artifacts.items()}
    artifacts = {
        name: {"artifacts": [{
            "name": name,
            "type": {"schemaTitle": spec["artifactType"]["schemaTitle"],
                     "schemaVersion": spec["artifactType"].get("schemaVersion", "0.0.1")},
            "uri": str(task_dir / (name + _SUFFIXES.get(spec["artifactType"]["schemaTitle"], ""))),
            "metadata": {},
        }]}
        for name, spec in outputs.get("artifacts", {}).items()
    }
    return {
        "inputs": inputs,
        "outputs": {
            "parameters": {name: {"outputFile": str(task_dir / "parameters" / name)}
                           for name in outputs.get("parameters", {})},
            "artifacts": artifacts,
            "outputFile": str(task_dir / "executor_output.json"),
        },
    }


def prepare_command(container: Mapping[str, Any], exec_input: Mapping[str, Any]) -> list[str]:
    """The task's command line, with its pip step dropped when already satisfied here."""
    command = list(container.get("command", []))
    if _is_pip_wrapper(command) and _requirements_satisfied(command[2]):
        command = command[3:]  # the wrapper ends in: "$0" "$@" — run exactly that
    args = [json.dumps(exec_input) if a == EXECUTOR_INPUT_PLACEHOLDER else a
            for a in container.get("args", [])]
    return command + args


def field_path_env(platform_executor: Mapping[str, Any], run_id: str,
                   namespace: str) -> dict[str, str]:
    """What kfp-kubernetes ``use_field_path_as_env`` would give the task in a pod."""
    known = {"metadata.labels['pipeline/runid']": run_id, "metadata.namespace": namespace}
    env = {}
    for item in platform_executor.get("fieldPathAsEnv", []):
        if item["fieldPath"] not in known:
            raise NotImplementedError(f"local runner cannot resolve field path {item['fieldPath']}")
        env[item["name"]] = known[item["fieldPath"]]
    return env


def run_container_task(name: str, container: Mapping[str, Any], component: Mapping[str, Any],
                       parameters: Mapping[str, Any], env: Mapping[str, str],
                       ctx: TaskContext, retries: int = 0, exit_task: bool = False,
                       input_artifacts: Mapping[str, dict] | None = None,
                       pod: str = "") -> dict[str, Any]:
    """Run the task (retrying like KFP's retry policy); its output parameters and artifacts.
    After a failure cancelled the run, only an exit task still starts. ``pod`` (what the pod
    would ask for) heads the log."""
    task_dir = ctx.run_dir / name
    exec_input = executor_input(parameters, component, task_dir, input_artifacts)
    for art in exec_input["outputs"]["artifacts"].values():
        Path(art["artifacts"][0]["uri"]).parent.mkdir(parents=True, exist_ok=True)
    log_path = ctx.run_dir / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if pod:
        with log_path.open("a") as log:
            log.write(f"# pod: {pod}\n")
    for attempt in range(retries + 1):
        exit_code = _run_process(name, prepare_command(container, exec_input), env, ctx,
                                 log_path, attempt, cancellable=not exit_task)
        if exit_code == 0:
            return _read_outputs(exec_input, component)
        if ctx.cancelled.is_set() and not exit_task:
            break
    raise TaskFailed(name, exit_code, log_path)


def _run_process(name: str, command: list[str], env: Mapping[str, str], ctx: TaskContext,
                 log_path: Path, attempt: int, cancellable: bool = True) -> int:
    full_env = {**os.environ, **ctx.extra_env, **env, "PYTHONUNBUFFERED": "1",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with log_path.open("a") as log, ctx.lock:
        if cancellable and ctx.cancelled.is_set():
            return -signal.SIGTERM
        log.write(f"# attempt {attempt + 1}: {shlex.join(command[:3])} ...\n")
        log.flush()
        proc = subprocess.Popen(command, env=full_env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        ctx.processes[name] = proc
    with log_path.open("a") as log:
        for line in proc.stdout:
            log.write(line)
            log.flush()
            ctx.on_line(name, line.rstrip("\n"))
    exit_code = proc.wait()
    with ctx.lock:
        ctx.processes.pop(name, None)
    return exit_code


def terminate_all(ctx: TaskContext, grace_s: float = 5.0) -> None:
    """Stop every running task's process group: SIGTERM, then SIGKILL after ``grace_s``."""
    with ctx.lock:
        ctx.cancelled.set()
        procs = list(ctx.processes.values())
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _read_outputs(exec_input: Mapping[str, Any], component: Mapping[str, Any]
                  ) -> dict[str, Any]:
    """The task's outputs as the KFP launcher collects them: parameters typed by their
    declarations, artifacts with their metadata."""
    out_file = Path(exec_input["outputs"]["outputFile"])
    result = json.loads(out_file.read_text()) if out_file.exists() else {}
    files = {}
    for name, spec in exec_input["outputs"]["parameters"].items():
        path = Path(spec["outputFile"])
        files[name] = path.read_text() if path.exists() else None
    params = collect_output_parameters(
        result.get("parameterValues", {}), files,
        component.get("outputDefinitions", {}).get("parameters", {}))
    artifacts = {}
    for name, entry in result.get("artifacts", {}).items():
        artifact = entry["artifacts"][0]
        artifacts[name] = artifact
        path = Path(artifact["uri"])
        if artifact.get("metadata"):
            # Metadata lives in MLMD on a cluster; locally it is a file: the artifact itself
            # for metrics (they have no file), a sibling ".metadata.json" for the others.
            target = path.with_name(path.name + ".metadata.json") if path.exists() else path
            target.write_text(json.dumps(artifact["metadata"], indent=2, sort_keys=True))
    return {"parameters": params, "artifacts": artifacts}


def _is_pip_wrapper(command: list[str]) -> bool:
    return len(command) > 3 and command[:2] == ["sh", "-c"] and "pip install" in command[2]


def _requirements_satisfied(pip_script: str) -> bool:
    for spec in _QUOTED.findall(pip_script):
        if spec.startswith("-"):
            continue
        try:
            requirement = Requirement(spec)
        except InvalidRequirement:
            return False
        if requirement.marker and not requirement.marker.evaluate():
            continue
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            return False
        if not requirement.specifier.contains(installed, prereleases=True):
            return False
    return True


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text().splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---- loopback substitutes for the Kubernetes Service tasks --------------------------------

def loopback_create_service(parameters: Mapping[str, Any], env: Mapping[str, str]) -> dict:
    """Locally the aggregator binds 127.0.0.1:port, so the 'Service' is just that address."""
    from server_component.k8s_objects import service_name

    url = f"http://127.0.0.1:{parameters['port']}"
    print(f"[local] create-service: would create Service {service_name(env['KFP_RUN_ID'])}; "
          f"loopback URL {url}")
    return {"parameters": {"url": url, "token": secrets.token_urlsafe(32)}, "artifacts": {}}


def loopback_create_checkpoint_volume(parameters: Mapping[str, Any],
                                      env: Mapping[str, str]) -> dict:
    """Locally a 'volume' is a directory under the run (see ``local_mounts``)."""
    from server_component.k8s_objects import checkpoint_pvc_name

    name = checkpoint_pvc_name(env["KFP_RUN_ID"])
    print(f"[local] create-checkpoint-volume: would create PVC {name}; a local directory")
    return {"parameters": {"Output": name}, "artifacts": {}}


def loopback_delete_service(parameters: Mapping[str, Any], env: Mapping[str, str]) -> dict:
    """Locally there is no Service or PVC to delete: it only says what it would delete."""
    from server_component.k8s_objects import checkpoint_pvc_name, service_name

    run_id = env["KFP_RUN_ID"]
    print(f"[local] delete-service: would delete Service {service_name(run_id)} "
          f"and PVC {checkpoint_pvc_name(run_id)}")
    return {"parameters": {}, "artifacts": {}}


LOOPBACK_TASKS: dict[str, Callable[[Mapping[str, Any], Mapping[str, str]], dict]] = {
    "exec-create-service": loopback_create_service,
    "exec-create-checkpoint-volume": loopback_create_checkpoint_volume,
    "exec-delete-service": loopback_delete_service,
}


def local_mounts(platform_executor: Mapping[str, Any], pvc_name_of: Callable[[dict], str],
                 run_dir: Path) -> dict[str, Path]:
    """Mount path -> local directory standing in for each PVC the task mounts."""
    mounts = {}
    for mount in platform_executor.get("pvcMount", []):
        if not mount.get("mountPath"):
            raise DriverError("failed to mount volume, missing mountpath or pvc name")
        try:
            name = pvc_name_of(mount.get("pvcNameParameter") or mount)
        except DriverError as exc:
            raise DriverError(f"failed to resolve pvc name: {exc}") from None
        local = run_dir / "volumes" / name
        local.mkdir(parents=True, exist_ok=True)
        mounts[mount["mountPath"].rstrip("/")] = local
    return mounts


def remap_paths(parameters: Mapping[str, Any], mounts: Mapping[str, Path]) -> dict[str, Any]:
    """Point parameter values under a mount path at the local directory instead."""
    remapped = dict(parameters)
    for name, value in parameters.items():
        for mount_path, local in mounts.items():
            if isinstance(value, str) and (value == mount_path
                                           or value.startswith(mount_path + "/")):
                remapped[name] = str(local) + value[len(mount_path):]
    return remapped
