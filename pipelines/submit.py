"""``python -m pipelines.submit``: upload the pipeline and start runs with ``kfp.Client``.

    python -m pipelines.submit --host URL upload [--package compiled/fl_pipeline.yaml]
    python -m pipelines.submit --host URL run --arg num_clients=7 [--experiment E] [--wait]

The host comes from ``--host`` or ``KFP_HOST``. Errors are one line and exit 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import requests

from pipelines.argument_checks import check_arguments
from pipelines.fl_pipeline import PIPELINE_NAME
from pipelines.parameters import (
    PipelineArgumentError,
    parse_pairs,
    root_parameters,
    typed_arguments,
    with_defaults,
)

DEFAULT_PACKAGE = Path("compiled/fl_pipeline.yaml")
FINAL_OK = "SUCCEEDED"


class SubmitError(RuntimeError):
    """Anything that stops a submit; printed as one line."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.submit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default=os.environ.get("KFP_HOST"),
                   help="KFP API endpoint, e.g. http://localhost:8080 (default: $KFP_HOST)")
    p.add_argument("--namespace", default=os.environ.get("KFP_NAMESPACE"),
                   help="namespace (profile) for multi-user Kubeflow")
    p.add_argument("--token", default=os.environ.get("KFP_TOKEN"),
                   help="existing bearer token for the KFP API (default: $KFP_TOKEN)")
    sub = p.add_subparsers(dest="command", required=True)
    upload = sub.add_parser("upload", help="upload the pipeline (a new version if it exists)")
    upload.add_argument("--package", type=Path, default=DEFAULT_PACKAGE)
    upload.add_argument("--name", default=PIPELINE_NAME, help="pipeline name in the UI")
    upload.add_argument("--version", default=None, help="version name (default: timestamp)")
    run = sub.add_parser("run", help="create a run of the pipeline package")
    run.add_argument("--package", type=Path, default=DEFAULT_PACKAGE)
    run.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                     help="pipeline argument, repeatable: --arg num_clients=7")
    run.add_argument("--experiment", default="fl-on-kubeflow", help="experiment name")
    run.add_argument("--run-name", default=None)
    run.add_argument("--service-account", default=None)
    run.add_argument("--wait", action="store_true", help="wait until the run finishes")
    run.add_argument("--timeout", type=int, default=3600, help="seconds to wait with --wait")
    return p


def check_reachable(host: str, token: str | None) -> None:
    """Fail fast with one clear line instead of kfp.Client's retries and tracebacks."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = requests.get(f"{host.rstrip('/')}/apis/v2beta1/healthz", headers=headers,
                                timeout=10)
    except requests.RequestException as exc:
        raise SubmitError(f"cannot reach Kubeflow Pipelines at {host}: "
                          f"{type(exc).__name__}") from None
    if response.status_code in (401, 403):
        raise SubmitError(f"Kubeflow Pipelines at {host} refused the credentials "
                          f"({response.status_code}): pass --token or set KFP_TOKEN")
    if not response.ok:
        raise SubmitError(f"Kubeflow Pipelines at {host} answered {response.status_code} "
                          "on /apis/v2beta1/healthz: is this the KFP API endpoint?")


def make_client(args: argparse.Namespace):
    import kfp

    return kfp.Client(host=args.host, namespace=args.namespace or "kubeflow",
                      existing_token=args.token)


def upload(client, args: argparse.Namespace) -> str:
    pipeline_id = client.get_pipeline_id(args.name)
    if pipeline_id is None:
        pipeline = client.upload_pipeline(str(args.package), pipeline_name=args.name)
        print(f"uploaded pipeline {args.name} (id {pipeline.pipeline_id})")
        return pipeline.pipeline_id
    version = args.version or dt.datetime.now().strftime("v%Y%m%d-%H%M%S")
    uploaded = client.upload_pipeline_version(str(args.package), pipeline_version_name=version,
                                              pipeline_id=pipeline_id)
    print(f"uploaded version {version} of pipeline {args.name} "
          f"(id {uploaded.pipeline_version_id})")
    return pipeline_id


def run(client, args: argparse.Namespace) -> int:
    definitions = root_parameters(args.package)
    arguments = typed_arguments(definitions, parse_pairs(args.arg))
    check_arguments(with_defaults(definitions, parse_pairs(args.arg)))
    result = client.create_run_from_pipeline_package(
        str(args.package), arguments=arguments, run_name=args.run_name,
        experiment_name=args.experiment, namespace=args.namespace, enable_caching=False,
        service_account=args.service_account,
    )
    print(f"run {result.run_id}: {args.host.rstrip('/')}/#/runs/details/{result.run_id}")
    if not args.wait:
        return 0
    finished = client.wait_for_run_completion(result.run_id, timeout=args.timeout)
    state = str(finished.state)
    print(f"run {result.run_id} finished: {state}")
    return 0 if state == FINAL_OK else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not args.host:
            raise SubmitError("no KFP host: pass --host URL or set KFP_HOST")
        if not args.package.is_file():
            raise SubmitError(f"pipeline package {args.package} not found (run `make compile`)")
        check_reachable(args.host, args.token)
        client = make_client(args)
        if args.command == "upload":
            upload(client, args)
            return 0
        return run(client, args)
    except (SubmitError, PipelineArgumentError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # kfp_server_api raises many types; the user needs one line
        print(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
