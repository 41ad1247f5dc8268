"""The aggregator task: serves the federated rounds until every client is done."""

from components.embedding import runtime_component
from components.from_settings import settings_function
from components.runtime import PYTHON_IMAGE, SERVER_PACKAGES
from server_component.settings import AggregatorConfig
from server_component.task import ARTIFACTS

# One input per aggregator setting (server_component.settings.AggregatorConfig), then the
# artifacts (server_component.task.ARTIFACTS): the final weights with their metadata, the
# per-round and per-client metrics tables, the final scalars, the summed confusion matrix and
# ROC curve of the clients' test splits, and an HTML report.
aggregator = runtime_component(["server_component", "contract"], base_image=PYTHON_IMAGE,
                               packages_to_install=SERVER_PACKAGES)(settings_function(
    "aggregator", AggregatorConfig, "server_component.task:run_aggregator_task",
    doc="Run the aggregator, checkpointing each round into checkpoint_dir (a retried task "
        "resumes from it), and write its outputs into the artifacts.",
    extra=tuple(f"{name}: Output[{kind}]" for name, kind in ARTIFACTS.items())))
