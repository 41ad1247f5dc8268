"""``python -m pipelines.submit``: upload the pipeline, start and follow runs with
``kfp.Client``.

    python -m pipelines.submit --host URL upload [--package compiled/fl_pipeline.yaml]
    python -m pipelines.submit --host URL run --arg num_clients=7 [--experiment E] [--wait]
    python -m pipelines.submit --host URL list [--limit 10]

The host comes from ``--host`` or ``KFP_HOST``. Credentials, as kfp.Client takes them: an
existing bearer token (``--token``/``KFP_TOKEN``), session cookies (``--cookies``/
``KFP_COOKIES``, e.g. ``authservice_session=...`` from a browser behind Dex), or, inside the
cluster, the pod's projected KFP token (``--in-cluster``). Errors are one line and exit 2;
``run --wait`` exits 1 when the run does not succeed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
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
from pipelines.tracked_epsilon import budget, private, spent_epsilons

DEFAULT_PACKAGE = Path("compiled/fl_pipeline.yaml")
FINAL_OK = "SUCCEEDED"
FINAL_STATES = {"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"}
IN_CLUSTER_TOKEN = "/var/run/secrets/kubeflow/pipelines/token"
KEY_PARAMETERS = ("num_clients", "rounds", "dataset", "strategy", "dp")
MAX_FAILED_CHECKS = 3


class SubmitError(RuntimeError):
    """Anything that stops a submit; printed as one line."""


def build_parser() -> argparse.ArgumentParser:
    """The command line: connection and credential flags, then upload, run or list."""
    p = argparse.ArgumentParser(prog="python -m pipelines.submit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default=os.environ.get("KFP_HOST"),
                   help="KFP API endpoint, e.g. http://localhost:8080 (default: $KFP_HOST)")
    p.add_argument("--namespace", default=os.environ.get("KFP_NAMESPACE"),
                   help="namespace (profile) for multi-user Kubeflow")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--token", default=None,
                      help="existing bearer token for the KFP API (default: $KFP_TOKEN)")
    auth.add_argument("--cookies", default=None,
                      help="session cookies, e.g. 'authservice_session=...' (default: "
                      "$KFP_COOKIES)")
    auth.add_argument("--in-cluster", action="store_true",
                      help=f"inside the cluster: the pod's KFP token ({IN_CLUSTER_TOKEN})")
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
    run.add_argument("--wait", action="store_true",
                     help="follow the run's state until it ends; exit 1 unless it succeeds")
    run.add_argument("--timeout", type=int, default=3600, help="seconds to wait with --wait")
    run.add_argument("--poll", type=positive_seconds, default=10.0,
                     help="seconds between state checks (> 0)")
    listing = sub.add_parser("list", help="recent runs: state, duration, key parameters")
    listing.add_argument("--limit", type=int, default=10)
    listing.add_argument("--experiment", default=None, help="only this experiment's runs")
    listing.add_argument("--mlflow-uri", default=None,
                         help="MLflow tracking server to read each private run's spent ε from "
                         "(default: the mlflow_tracking_uri the run was given; e.g. a "
                         "port-forward of the in-cluster server)")
    return p


def positive_seconds(raw: str) -> float:
    """An argparse type: a number of seconds > 0 (a zero poll would hammer the API)."""
    value = float(raw)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {raw}")
    return value


def credentials_from_env(args: argparse.Namespace) -> None:
    """A flag wins; only when no credential flag is given do KFP_TOKEN or KFP_COOKIES count
    (so that --in-cluster or --cookies never also send a token from the environment)."""
    if not (args.token or args.cookies or args.in_cluster):
        args.token = os.environ.get("KFP_TOKEN") or None
        args.cookies = None if args.token else os.environ.get("KFP_COOKIES") or None


def auth_headers(args: argparse.Namespace) -> dict[str, str]:
    """The headers kfp.Client will send for these credentials (for the reachability check)."""
    if args.in_cluster:
        return {"Authorization": f"Bearer {in_cluster_token()}"}
    if args.cookies:
        return {"Cookie": args.cookies}
    return {"Authorization": f"Bearer {args.token}"} if args.token else {}


def in_cluster_token() -> str:
    """The pod's projected KFP token; SubmitError when this is not such a pod."""
    path = IN_CLUSTER_TOKEN
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise SubmitError(f"--in-cluster: cannot read the KFP token at {path} ({exc.strerror}):"
                          " is this a pod with the pipelines token volume?") from None


def check_reachable(host: str, headers: dict[str, str]) -> None:
    """Fail fast with one clear line instead of kfp.Client's retries and tracebacks."""
    try:
        response = requests.get(f"{host.rstrip('/')}/apis/v2beta1/healthz", headers=headers,
                                timeout=10)
    except requests.RequestException as exc:
        raise SubmitError(f"cannot reach Kubeflow Pipelines at {host}: "
                          f"{type(exc).__name__}") from None
    if response.status_code in (401, 403):
        raise SubmitError(f"Kubeflow Pipelines at {host} refused the credentials "
                          f"({response.status_code}): pass --token, --cookies or --in-cluster")
    if not response.ok:
        raise SubmitError(f"Kubeflow Pipelines at {host} answered {response.status_code} "
                          "on /apis/v2beta1/healthz: is this the KFP API endpoint?")


def make_client(args: argparse.Namespace):
    """A kfp.Client with these credentials, in namespace ``kubeflow`` unless one is given."""
    import kfp

    credentials = None
    if args.in_cluster:
        credentials = kfp.client.ServiceAccountTokenVolumeCredentials(IN_CLUSTER_TOKEN)
    return kfp.Client(host=args.host, namespace=args.namespace or "kubeflow",
                      existing_token=args.token, cookies=args.cookies,
                      credentials=credentials)


def upload(client, args: argparse.Namespace) -> str:
    """Upload the package as a new pipeline, or as a new version of the pipeline of that name
    if it exists; the pipeline's id."""
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
    """Create a run of the package with the ``--arg`` values, checked first as the backend
    would; with ``--wait`` follow it. The exit status: 1 if a followed run did not succeed."""
    definitions = root_parameters(args.package)
    arguments = typed_arguments(definitions, parse_pairs(args.arg))
    check_arguments(with_defaults(definitions, parse_pairs(args.arg)))
    result = client.create_run_from_pipeline_package(
        str(args.package), arguments=arguments, run_name=args.run_name,
        experiment_name=args.experiment, namespace=args.namespace, enable_caching=False,
        service_account=args.service_account,
    )
    print(f"run {result.run_id}: {run_url(args.host, result.run_id)}", flush=True)
    if not args.wait:
        return 0
    state = follow(client, result.run_id, args.timeout, args.poll)
    print(f"run {result.run_id} finished: {state} {run_url(args.host, result.run_id)}")
    return 0 if state == FINAL_OK else 1


def follow(client, run_id: str, timeout: float, poll: float,
           clock=time.monotonic, sleep=time.sleep) -> str:
    """Print each state the run goes through until it ends; its final state (or TIMEOUT).
    A few failed checks in a row (a flaky port-forward) are waited out, not fatal."""
    started, last, failures = clock(), None, 0
    while True:
        try:
            state = _state(client.get_run(run_id))
            failures = 0
        except Exception as exc:  # kfp_server_api and urllib3 raise many types
            failures += 1
            if failures > MAX_FAILED_CHECKS:
                raise SubmitError(f"lost track of run {run_id}: {exc}") from None
            print(f"  state check failed ({type(exc).__name__}), trying again", flush=True)
            sleep(poll)
            continue
        if state != last:
            print(f"  {clock() - started:6.0f} s  {state}", flush=True)
            last = state
        if state in FINAL_STATES:
            return state
        if clock() - started + poll > timeout:
            print(f"  gave up waiting after {timeout:.0f} s (the run goes on)")
            return "TIMEOUT"
        sleep(poll)


def list_runs(client, args: argparse.Namespace) -> int:
    """Print the latest runs as a table: id, name, state, created, duration, key parameters."""
    experiment_id = None
    if args.experiment:
        experiment_id = client.get_experiment(experiment_name=args.experiment,
                                              namespace=args.namespace).experiment_id
    response = client.list_runs(page_size=args.limit, sort_by="created_at desc",
                                experiment_id=experiment_id, namespace=args.namespace)
    runs = response.runs or []
    parameters = {r.run_id: _parameters(r) for r in runs}
    spent, notes = spent_epsilons(parameters, args.mlflow_uri)
    rows = [_run_row(r, parameters[r.run_id], spent.get(r.run_id)) for r in runs]
    header = ("run id", "name", "state", "created", "duration", "ε spent (budget)",
              "key parameters")
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        print("(no runs)")
    for note in notes:
        print(f"note: {note}")
    return 0


def _parameters(api_run) -> dict:
    return dict((api_run.runtime_config.parameters if api_run.runtime_config else None) or {})


def _run_row(r, params: dict, spent: float | None) -> tuple[str, ...]:
    key = " ".join(f"{k}={params[k]}" for k in KEY_PARAMETERS if k in params)
    created, finished = r.created_at, r.finished_at
    ended = finished is not None and finished.year > 1970  # unset times come back as 1970
    duration = f"{(finished - created).total_seconds():.0f} s" if ended and created else "-"
    return (r.run_id, r.display_name or "-", _state(r),
            created.strftime("%Y-%m-%d %H:%M") if created else "-", duration,
            _epsilon_cell(params, spent), key or "-")


def _epsilon_cell(params: dict, spent: float | None) -> str:
    """"7.69 (≤ 8)": the ε the run spent (from MLflow) and its budget; "? (≤ 8)" when the
    run was not tracked or its tracking server was not readable; "-" without DP."""
    if not private(params):
        return "-"
    return f"{'?' if spent is None else format(spent, '.3g')} ({budget(params)})"


def _state(api_run) -> str:
    return str(getattr(api_run, "state", None) or "PENDING").rsplit(".", 1)[-1]


def run_url(host: str, run_id: str) -> str:
    """The run's page in the KFP UI."""
    return f"{host.rstrip('/')}/#/runs/details/{run_id}"


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; the exit status (2 for an error, printed as one line)."""
    args = build_parser().parse_args(argv)
    credentials_from_env(args)
    try:
        if not args.host:
            raise SubmitError("no KFP host: pass --host URL or set KFP_HOST")
        if getattr(args, "package", None) and not args.package.is_file():
            raise SubmitError(f"pipeline package {args.package} not found (run `make compile`)")
        check_reachable(args.host, auth_headers(args))
        client = make_client(args)
        if args.command == "upload":
            upload(client, args)
            return 0
        if args.command == "list":
            return list_runs(client, args)
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
