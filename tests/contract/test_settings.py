"""Settings defined once: the command lines, the FL_* variables, the pipeline parameters, the
components' inputs, the argument checks and the README tables all agree with the settings
classes, so none of them can drift from the others."""

import argparse
import dataclasses
import subprocess
import sys

import pytest
import yaml

from client_component.keras_learner import TrainingConfig
from client_component.model_config import ModelConfig
from client_component.settings import ClientConfig
from components.from_settings import settings_function
from contract.settings import (
    SettingsError,
    add_arguments,
    at_least,
    from_values,
    parse_command_line,
    setting,
    settings_of,
)
from pipelines.argument_checks import check_arguments
from pipelines.parameters import (
    PipelineArgumentError,
    pipeline_parameters,
    readme_tables,
)
from server_component.settings import AggregatorConfig
from server_component.task import ARTIFACTS
from tests.support.paths import REPO_ROOT

COMPILED = REPO_ROOT / "compiled" / "fl_pipeline.yaml"
KFP_TYPES = {int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE", str: "STRING", bool: "BOOLEAN"}


@pytest.fixture(scope="module")
def ir():
    return next(yaml.safe_load_all(COMPILED.read_text()))


@pytest.mark.parametrize("name", ["pipeline", "aggregator", "client"])
def test_the_readme_tables_are_the_generated_ones(name):
    assert readme_tables(5)[name] in (REPO_ROOT / "README.md").read_text(), (
        f"README's {name} table drifted: paste `python -m pipelines.parameters --markdown "
        f"{name}`")


def test_every_pipeline_parameter_is_a_setting_with_its_type_default_and_help(ir):
    declared = ir["root"]["inputDefinitions"]["parameters"]
    parameters = pipeline_parameters(5)
    assert set(declared) == {p.name for p in parameters}
    for p in parameters:
        assert declared[p.name]["parameterType"] == KFP_TYPES[p.type], p.name
        assert declared[p.name]["defaultValue"] == p.default, p.name
        assert declared[p.name]["description"] == p.help, p.name


@pytest.mark.parametrize("cls", [ClientConfig, AggregatorConfig])
def test_every_command_line_setting_reaches_the_kubeflow_ui_with_the_same_default(ir, cls):
    declared = ir["root"]["inputDefinitions"]["parameters"]
    for item in settings_of(cls):
        if item.spec.wired:
            continue
        assert item.parameter in declared, f"{item.flag} has no pipeline parameter"
        expected = (5 if item.parameter == "num_clients" else item.parameter_default)
        assert declared[item.parameter]["defaultValue"] == expected, item.flag


@pytest.mark.parametrize("component, cls, own_inputs, extra", [
    ("comp-client", ClientConfig, {"credential"}, set()),
    ("comp-aggregator", AggregatorConfig, set(), set(ARTIFACTS))])
def test_the_components_take_one_input_per_setting(ir, component, cls, own_inputs, extra):
    spec = ir["components"][component]
    inputs = spec["inputDefinitions"]["parameters"]
    settings = {s.name: s for s in settings_of(cls) if s.spec.task_input}
    assert set(inputs) == set(settings) | own_inputs
    for name, item in settings.items():
        assert inputs[name]["parameterType"] == KFP_TYPES[item.type], name
    outputs = set(spec.get("outputDefinitions", {}).get("artifacts", {}))
    assert outputs == extra


def test_the_learner_configs_take_their_defaults_from_the_client_settings():
    client = {s.name: s.default for s in settings_of(ClientConfig)}
    model = ModelConfig()
    assert (model.architecture, model.width, model.depth, model.norm, model.optimizer,
            model.learning_rate) == (client["model"], client["model_width"],
                                     client["model_depth"], client["norm"],
                                     client["optimizer"], client["learning_rate"])
    for field in dataclasses.fields(TrainingConfig):
        assert getattr(TrainingConfig(), field.name) == client[field.name], field.name


CHECKED_BOTH_WAYS = [("batch_size", "0", "must be at least 1, got 0"),
                     ("learning_rate", "0", "must be greater than 0"),
                     ("norm", "batch", "'batch' is not accepted; accepted: none, group"),
                     ("partition", "zipf", ": unknown partition 'zipf'"),
                     ("channels", "2", "2 is not accepted; accepted: 1, 3")]


@pytest.mark.parametrize("name, value, message", CHECKED_BOTH_WAYS)
def test_the_command_line_and_the_pipeline_refuse_with_the_same_check(name, value, message,
                                                                      capsys):
    flag = "--" + name.replace("_", "-")
    base = ["--server", "http://x", "--client-id", "0", "--num-clients", "2", "--rounds", "1"]
    with pytest.raises(SystemExit) as exited:
        parse_command_line(_client_parser(), ClientConfig, [*base, flag, value])
    assert exited.value.code == 2
    assert f"{flag}{' ' if not message.startswith(':') else ''}{message}" in capsys.readouterr().err
    typed = next(p.type for p in pipeline_parameters(5) if p.name == name)(value)
    with pytest.raises(PipelineArgumentError) as refused:
        check_arguments({name: typed})
    assert f"{name}{' ' if not message.startswith(':') else ''}{message}" in str(refused.value)


def test_flags_fall_back_to_fl_variables_and_the_command_line_wins():
    env = {"FL_SERVER": "http://agg:8080", "FL_CLIENT_ID": "1", "FL_NUM_CLIENTS": "3",
           "FL_ROUNDS": "2", "FL_BATCH_SIZE": "7", "FL_WIDTH": "99", "FL_MODEL_WIDTH": "16",
           "FL_FRESH_OPTIMIZER": "true"}
    parser = argparse.ArgumentParser()
    add_arguments(parser, ClientConfig, env=env)
    config = parse_command_line(parser, ClientConfig, ["--rounds", "4"])
    assert (config.server, config.client_id, config.rounds, config.batch_size,
            config.model_width, config.fresh_optimizer) == ("http://agg:8080", 1, 4, 7, 16, True)
    old_spelling = parse_command_line(parser, ClientConfig, ["--width", "8"])
    assert old_spelling.model_width == 8


def test_a_task_takes_its_inputs_then_fl_variables_then_defaults():
    config = from_values(AggregatorConfig, {"num_clients": 2, "rounds": 3, "port": 9000},
                         env={"FL_HOST": "127.0.0.1", "FL_PORT": "1"})
    assert (config.host, config.port, config.strategy) == ("127.0.0.1", 9000, "fedavg")
    with pytest.raises(SettingsError, match="rounds is required"):
        from_values(AggregatorConfig, {"num_clients": 2}, env={})
    with pytest.raises(SettingsError, match="min_clients must be 0 .all clients. or in 1..num"):
        from_values(AggregatorConfig, {"num_clients": 2, "rounds": 1, "min_clients": 3}, env={})


def test_a_bad_fl_variable_is_one_line_naming_it():
    result = subprocess.run([sys.executable, "-m", "server_component", "--num-clients", "2"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                            env={"FL_ROUNDS": "many", "PATH": ""})
    assert result.returncode == 2
    assert "argument --rounds: invalid int value: 'many'" in result.stderr


def test_a_new_setting_is_one_definition():
    """A settings class with one more field: the flag, its variable, the check and the
    generated component input all follow from that field alone."""

    @dataclasses.dataclass(frozen=True)
    class Toy:
        rounds: int = setting(help="rounds", check=at_least(1))
        warmup: int = setting(3, "warm-up rounds", check=at_least(0))

    parser = argparse.ArgumentParser()
    add_arguments(parser, Toy, env={"FL_WARMUP": "5"})
    assert parse_command_line(parser, Toy, ["--rounds", "2"]) == Toy(2, 5)
    with pytest.raises(SettingsError, match="warmup must be at least 0, got -1"):
        from_values(Toy, {"rounds": 2, "warmup": -1}, env={})
    generated = settings_function("toy", Toy, "json:dumps", doc="A toy.")
    assert list(generated.__annotations__) == ["rounds", "warmup"]


def test_parameters_feeding_two_runtimes_must_mean_the_same(monkeypatch):
    @dataclasses.dataclass(frozen=True)
    class Clashing:
        rounds: float = setting(5.0, "rounds, but a float")

    monkeypatch.setattr("pipelines.parameters.PIPELINE_SETTINGS",
                        (AggregatorConfig, Clashing))
    with pytest.raises(TypeError, match="rounds means different things"):
        pipeline_parameters(5)


def _client_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="client")
    add_arguments(parser, ClientConfig, env={})
    return parser


def test_a_client_token_must_be_this_clients(capsys):
    from contract.credentials import client_token

    base = ["--server", "http://x", "--num-clients", "4", "--rounds", "1"]
    own = parse_command_line(_client_parser(), ClientConfig,
                             [*base, "--client-id", "2", "--token", client_token("s", 2)])
    assert own.client_id == 2
    with pytest.raises(SystemExit):
        parse_command_line(_client_parser(), ClientConfig,
                           [*base, "--client-id", "3", "--token", client_token("s", 2)])
    assert "--token is client 2's, but --client-id is 3" in capsys.readouterr().err
