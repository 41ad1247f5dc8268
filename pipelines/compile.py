"""``python -m pipelines.compile``: write the pipeline YAML users upload in the Kubeflow UI."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

DEFAULT_OUTPUT = Path("compiled/fl_pipeline.yaml")
# Linux's limit on one exec argument (MAX_ARG_STRLEN, 32 pages): a pod whose container
# command has a longer one fails to start with "argument list too long".
MAX_ARGUMENT_BYTES = 128 * 1024


class CompiledPipelineError(ValueError):
    """The compiled YAML would fail, or be misread, on a real KFP backend."""


def check_compiled(path: Path) -> None:
    """Refuse a compiled pipeline whose task inputs the KFP driver would reject or whose
    platform document the backend would drop or misread (CompiledPipelineError)."""
    from pipelines.fl_pipeline import PLATFORM_NEEDS
    from pipelines.input_types import parameter_type_problems
    from pipelines.platform_spec import platform_problems

    docs = list(yaml.safe_load_all(Path(path).read_text()))
    problems = parameter_type_problems(docs[0]) + argument_length_problems(docs[0])
    if len(docs) < 2:
        problems.append("no platform document: no pod labels, volumes or run-id variables")
    else:
        problems += platform_problems(docs[0], docs[1], PLATFORM_NEEDS)
    if problems:
        raise CompiledPipelineError(f"{path}: " + "; ".join(problems))


def argument_length_problems(ir: dict) -> list[str]:
    """Every container command or argument longer than one exec argument may be (the
    embedded packages travel in one)."""
    problems = []
    for label, executor in ir.get("deploymentSpec", {}).get("executors", {}).items():
        container = executor.get("container", {})
        for part in [*container.get("command", []), *container.get("args", [])]:
            size = len(part.encode())
            if size >= MAX_ARGUMENT_BYTES:
                problems.append(
                    f"executor {label}: a command argument of {size} bytes exceeds Linux's "
                    f"{MAX_ARGUMENT_BYTES}-byte limit per argument (MAX_ARG_STRLEN): its pod "
                    "would fail with 'argument list too long' (embed less code)")
    return problems


def compile_pipeline(output: Path, num_clients: int, base_image: str | None = None,
                     client_image: str | None = None) -> Path:
    """Compile the pipeline to ``output``, checked (``check_compiled``) before it replaces
    anything there; images override the stock ones when given."""
    from kfp import compiler

    from components import aggregator, client, service
    from pipelines.fl_pipeline import build_pipeline

    python_components = [service.create_service, service.create_checkpoint_volume,
                         service.delete_service, aggregator.aggregator, client.client_credentials]
    for component in python_components if base_image else []:
        component.component_spec.implementation.container.image = base_image
    for tensorflow_component in (client.client, client.export_model):
        if client_image or base_image:
            tensorflow_component.component_spec.implementation.container.image = (
                client_image or base_image)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, draft = tempfile.mkstemp(suffix=".yaml", dir=output.parent)
    os.close(fd)
    try:
        # The client pods' image is the run parameter client_image; this sets its default.
        compiler.Compiler().compile(build_pipeline(num_clients, client_image or base_image),
                                    package_path=draft)
        check_compiled(Path(draft))
        os.replace(draft, output)
    finally:
        Path(draft).unlink(missing_ok=True)
    return output


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: compile to ``--output``; the exit status (1 if the check failed)."""
    from pipelines.fl_pipeline import default_num_clients

    parser = argparse.ArgumentParser(prog="python -m pipelines.compile", description=__doc__)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="YAML to write")
    parser.add_argument("--num-clients", type=int, default=None,
                        help="default of the num_clients parameter (else NUM_OF_CLIENTS, or 5)")
    parser.add_argument("--base-image", default=None,
                        help="image for every task (a pre-baked image with the runtime deps)")
    parser.add_argument("--client-image", default=None,
                        help="image for the TensorFlow tasks, client and export-model "
                        "(default: --base-image or tensorflow/tensorflow)")
    args = parser.parse_args(argv)
    try:
        num_clients = args.num_clients if args.num_clients is not None else default_num_clients()
    except ValueError as exc:
        parser.error(str(exc))
    if num_clients < 1:
        parser.error(f"--num-clients must be at least 1, got {num_clients}")
    try:
        path = compile_pipeline(args.output, num_clients, args.base_image, args.client_image)
    except CompiledPipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"compiled {path} (num_clients default {num_clients})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
