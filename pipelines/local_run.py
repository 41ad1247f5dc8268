"""``python -m pipelines.local_run``: execute the compiled pipeline YAML on this machine.

``kfp.local`` runs tasks one at a time, so an aggregator waiting for its clients would
deadlock. This runner walks the compiled DAG itself: independent tasks start together as
subprocesses running their compiled commands, ParallelFor iterations run at once, outputs
flow between tasks, a failed task stops the rest, and the exit task always runs.

It is as strict as the KFP backend: every DAG, loop iteration and container task resolves
its inputs by the backend driver's rules (``pipelines.kfp_driver``), so a pipeline that a
real cluster would fail with ``failed to resolve inputs: ...`` fails here the same way.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelines.argument_checks import check_arguments
from pipelines.kfp_driver import (
    DriverError,
    collect_output_parameters,
    executor_values,
    launcher_inputs,
    loop_items,
    resolve_iteration_inputs,
    resolve_string,
    resolve_task_inputs,
    root_inputs,
)
from pipelines.kfp_pod_patch import pod_patch
from pipelines.live_status import LiveStatus
from pipelines.local_conditions import ConditionError, evaluate_condition
from pipelines.local_tasks import (
    LOOPBACK_TASKS,
    TaskContext,
    field_path_env,
    local_mounts,
    remap_paths,
    run_container_task,
    terminate_all,
)
from pipelines.parameters import PipelineArgumentError, parse_pairs, with_defaults

LOCAL_NAMESPACE = "local"
# One TF thread per client process: N clients share this machine's few cores.
LOCAL_ENV = {"FL_HOST": "127.0.0.1", "TF_CPP_MIN_LOG_LEVEL": "3",
             "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
_ROUND_LINE = re.compile(r"event=round_closed (.*)")


class DagFailed(RuntimeError):
    """A task of a DAG failed; the run's first failure message says which and why."""


@dataclass
class RunResult:
    """How a local run ended: its id and directory, whether it succeeded (else its first
    failure message) and the outputs of each task by name."""

    run_id: str
    run_dir: Path
    succeeded: bool
    error: str | None = None
    outputs: dict[str, dict] = field(default_factory=dict)


class LocalRunner:
    """Executes one compiled pipeline (IR YAML plus its Kubernetes platform spec)."""

    def __init__(self, pipeline_yaml: Path, runs_dir: Path = Path("runs"),
                 echo_progress: bool = True) -> None:
        docs = list(yaml.safe_load_all(Path(pipeline_yaml).read_text()))
        self.spec = docs[0]
        platform = docs[1] if len(docs) > 1 else {}
        self.platform_executors = (platform.get("platforms", {}).get("kubernetes", {})
                                   .get("deploymentSpec", {}).get("executors", {}))
        self.runs_dir = runs_dir
        self.echo_progress = echo_progress
        self.status = LiveStatus() if echo_progress else None
        self._failure: str | None = None
        self._outputs: dict[str, dict] = {}
        self._outputs_lock = threading.Lock()

    # ---- public -------------------------------------------------------------------------

    def resolve_arguments(self, arguments: Mapping[str, str]) -> dict[str, Any]:
        """Pipeline defaults overridden by ``arguments``, typed as the pipeline declares and
        checked (PipelineArgumentError) before anything starts."""
        definitions = self.spec["root"].get("inputDefinitions", {}).get("parameters", {})
        values = with_defaults(definitions, arguments)
        check_arguments(values, local=True)
        return values

    def run(self, arguments: Mapping[str, str] | None = None) -> RunResult:
        """Run the pipeline with ``arguments`` over its defaults (the aggregator on a free
        port unless given one); a failed task ends up in the result, not raised."""
        values = self.resolve_arguments(dict(arguments or {}))
        if "aggregator_port" in values and "aggregator_port" not in (arguments or {}):
            values["aggregator_port"] = free_port()
        definitions = self.spec["root"].get("inputDefinitions", {}).get("parameters", {})
        run_id = str(uuid.uuid4())
        run_dir = self.runs_dir / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "parameters.json").write_text(json.dumps(values, indent=2, sort_keys=True))
        ctx = TaskContext(run_id=run_id, namespace=LOCAL_NAMESPACE, run_dir=run_dir,
                          extra_env=LOCAL_ENV, on_line=self._on_line)
        self._progress(f"run {run_id} -> {run_dir}")
        try:
            self._run_dag(self.spec["root"], root_inputs(values, definitions), ctx)
        except DagFailed:
            pass  # already reported by _fail, and the exit task has run
        except KeyboardInterrupt:
            self._fail("interrupted", ctx)
        return RunResult(run_id, run_dir, self._failure is None, self._failure,
                         dict(self._outputs))

    # ---- DAG walking --------------------------------------------------------------------

    def _run_dag(self, component: Mapping[str, Any], inputs: Mapping[str, Any],
                 ctx: TaskContext, suffix: str = "") -> None:
        """Run every task of a DAG, each once its upstream tasks finished; ``suffix`` tells
        ParallelFor iterations apart in task names (client-0, client-1, ...). ``inputs`` are
        the DAG's own, as its driver resolved them."""
        tasks = component["dag"]["tasks"]
        finished = {name: threading.Event() for name in tasks}
        status: dict[str, str] = {}
        outputs: dict[str, dict] = {}

        def run_one(name: str, task: Mapping[str, Any]) -> None:
            display = task.get("taskInfo", {}).get("name", name)
            try:
                for upstream in task.get("dependentTasks", []):
                    finished[upstream].wait()
                upstream_ok = all(status[u] == "succeeded" for u in task.get("dependentTasks", []))
                if not is_exit_task(task) and (not upstream_ok or ctx.cancelled.is_set()):
                    status[name] = "skipped"
                    return
                child = self.spec["components"][task["componentRef"]["name"]]
                params = self._driver_inputs(display + suffix, task, child, inputs, outputs, ctx)
                if not self._triggers(display + suffix, task, params):
                    status[name] = "skipped"
                    return
                artifacts = self._artifact_inputs(task, outputs)
                outputs[name] = self._run_task(display, suffix, task, child, params, ctx,
                                               inputs, outputs, artifacts)
                status[name] = "succeeded"
            except Exception as exc:  # any failure stops the run; the exit task still runs
                status[name] = "failed"
                self._fail(str(exc), ctx)
            finally:
                finished[name].set()

        run_together(run_one, list(tasks.items()))
        if any(s == "failed" for s in status.values()):
            raise DagFailed("a task in this DAG failed")  # the first failure is in _failure

    @staticmethod
    def _driver_inputs(name: str, task: Mapping[str, Any], component: Mapping[str, Any],
                       inputs: Mapping[str, Any], outputs: Mapping[str, dict],
                       ctx: TaskContext) -> dict[str, Any]:
        """The task's inputs as its KFP driver resolves them, or the driver's failure."""
        run = {"run_id": ctx.run_id, "run_name": ctx.run_id, "task_name": name}
        try:
            return resolve_task_inputs(task, component, inputs, outputs,
                                       dag_driver="dag" in component, run=run)
        except DriverError as exc:
            raise DriverError(f"driver of task {name} failed: {exc}") from None

    @staticmethod
    def _triggers(name: str, task: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
        """Whether the task's ``dsl.If`` condition holds on its resolved inputs."""
        condition = task.get("triggerPolicy", {}).get("condition")
        try:
            return not condition or evaluate_condition(condition, params)
        except ConditionError as exc:
            raise DriverError(f"driver of task {name} failed: {exc}") from None

    def _run_task(self, display: str, suffix: str, task: Mapping[str, Any],
                  component: Mapping[str, Any], params: dict[str, Any], ctx: TaskContext,
                  dag_inputs: Mapping[str, Any], dag_outputs: Mapping[str, dict],
                  artifacts: Mapping[str, dict] | None = None) -> dict:
        if "dag" in component:
            return self._run_sub_dag(display + suffix, suffix, task, component, params, ctx)
        name = display + suffix
        label = component["executorLabel"]
        platform = self.platform_executors.get(label, {})
        try:
            mounts = local_mounts(platform, lambda ref: resolve_string(ref, dag_inputs,
                                                                       dag_outputs),
                                  ctx.run_dir)
        except DriverError as exc:
            raise DriverError(f"driver of task {name} failed: {exc}") from None
        # What the component's Python function receives: the launcher's defaults added,
        # numbers written as protojson writes them (3, not 3.0).
        values = remap_paths(executor_values(launcher_inputs(params, component)), mounts)
        env = field_path_env(platform, ctx.run_id, ctx.namespace)
        env["KFP_RUN_ID"] = env.get("KFP_RUN_ID", ctx.run_id)
        if label in LOOPBACK_TASKS:
            result = LOOPBACK_TASKS[label](values, env)
            result["parameters"] = collect_output_parameters(
                result["parameters"], {}, component.get("outputDefinitions", {})
                .get("parameters", {}))
        else:
            container = self.spec["deploymentSpec"]["executors"][label]["container"]
            try:
                pod = pod_patch(container, params)
            except DriverError as exc:
                raise DriverError(f"driver of task {name} failed: {exc}") from None
            retries = int(task.get("retryPolicy", {}).get("maxRetryCount", 0))
            result = run_container_task(name, container, component, values, env, ctx, retries,
                                        exit_task=is_exit_task(task), input_artifacts=artifacts,
                                        pod=pod.describe())
        with self._outputs_lock:
            self._outputs[name] = result
        return result

    def _run_sub_dag(self, name: str, suffix: str, task: Mapping[str, Any],
                     component: Mapping[str, Any], params: dict[str, Any],
                     ctx: TaskContext) -> dict:
        iterator = task.get("parameterIterator")
        if iterator is None:
            self._run_dag(component, params, ctx, suffix)
            return {"parameters": {}, "artifacts": {}}
        loop_inputs = dict(params)
        try:
            if "raw" in iterator["items"]:  # a loop over a literal list
                loop_inputs[iterator["itemInput"]] = loop_items(iterator["items"]["raw"])
            items_input = iterator["items"].get("inputParameter") or iterator["itemInput"]
            count = len(loop_items(loop_inputs.get(items_input)))
            iterations = [resolve_iteration_inputs(task, component, loop_inputs, index)
                          for index in range(count)]
        except DriverError as exc:
            raise DriverError(f"driver of task {name} failed: iterating on item input "
                              f"\"{iterator['itemInput']}\" failed: {exc}") from None
        errors: list[Exception] = []

        def iteration(index: int, inputs: dict[str, Any]) -> None:
            try:
                self._run_dag(component, inputs, ctx, suffix=f"{suffix}-{index}")
            except Exception as exc:
                errors.append(exc)

        run_together(iteration, list(enumerate(iterations)))
        if errors:
            raise errors[0]
        return {"parameters": {}, "artifacts": {}}

    @staticmethod
    def _artifact_inputs(task: Mapping[str, Any], outputs: Mapping[str, dict]
                         ) -> dict[str, dict]:
        """Each input artifact as its producer wrote it (uri and metadata)."""
        found = {}
        for name, source in task.get("inputs", {}).get("artifacts", {}).items():
            ref = source.get("taskOutputArtifact")
            if ref is None:
                raise NotImplementedError(f"local runner: unsupported artifact source {source}")
            found[name] = outputs[ref["producerTask"]]["artifacts"][ref["outputArtifactKey"]]
        return found

    # ---- failure and progress -----------------------------------------------------------

    def _fail(self, message: str, ctx: TaskContext) -> None:
        first = self._failure is None
        if first:
            self._failure = message
            self._progress(f"FAILED: {message}")
        terminate_all(ctx)

    def _on_line(self, task: str, line: str) -> None:
        if self.status is not None and task == "aggregator":
            self.status.feed(line)
        match = _ROUND_LINE.search(line)
        if match:
            self._progress(f"[{task}] {match.group(1)}")

    def _progress(self, line: str) -> None:
        if self.status is not None:
            self.status.print_line(line)
        elif self.echo_progress:
            print(line, flush=True)


def is_exit_task(task: Mapping[str, Any]) -> bool:
    """An ExitHandler's task: it runs once its upstream tasks ended, whatever their state."""
    return task.get("triggerPolicy", {}).get("strategy") == "ALL_UPSTREAM_TASKS_COMPLETED"


def run_together(target: Callable[..., None], calls: Sequence[tuple]) -> None:
    """``target(*args)`` for every ``args`` of ``calls`` at once, one thread each; returns
    when all have (the DAG's tasks, a ParallelFor's iterations)."""
    threads = [threading.Thread(target=target, args=args, daemon=True) for args in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it), for a local aggregator."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def print_summary(result: RunResult) -> None:
    """Print how the run ended: the final model's test metrics, the run's other metrics,
    and where its outputs, logs and HTML report are."""
    print(f"\nrun {result.run_id}: {'SUCCEEDED' if result.succeeded else 'FAILED'}")
    aggregator = result.outputs.get("aggregator", {}).get("artifacts", {})
    exported = result.outputs.get("export-model", {}).get("artifacts", {})
    metrics = aggregator.get("metrics", {}).get("metadata", {})
    if metrics:
        print("final global model on the clients' test splits: "
              + " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())
                         if k.startswith("test_")))
        print("run: " + " ".join(f"{k}={v:g}" for k, v in sorted(metrics.items())
                                 if not k.startswith("test_")))
    print(f"outputs in {result.run_dir}/")
    for name, artifact in sorted({**aggregator, **exported}.items()):
        print(f"  {name}: {artifact['uri']}")
    print(f"  logs: {result.run_dir / 'logs'}/")
    report = aggregator.get("report")
    if report and Path(report["uri"]).is_file():
        print(f"HTML report: {report['uri']} (open it in a browser)")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: run the compiled pipeline here; the exit status (0 succeeded,
    1 the run failed, 2 bad arguments or no pipeline YAML)."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.local_run", description=__doc__)
    parser.add_argument("--pipeline", type=Path, default=Path("compiled/fl_pipeline.yaml"))
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                        help="pipeline argument, repeatable (e.g. --arg num_clients=7)")
    args = parser.parse_args(argv)
    if not args.pipeline.is_file():
        print(f"error: pipeline YAML {args.pipeline} not found (run `make compile`)",
              file=sys.stderr)
        return 2
    runner = LocalRunner(args.pipeline, args.runs_dir)
    try:
        arguments = parse_pairs(args.arg)
        runner.resolve_arguments(arguments)
    except PipelineArgumentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    result = runner.run(arguments)
    if runner.status is not None:
        runner.status.close()
    print_summary(result)
    print(f"  wall time: {time.monotonic() - started:.1f} s")
    return 0 if result.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
