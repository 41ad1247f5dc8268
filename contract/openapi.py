"""The aggregator's HTTP API as an OpenAPI 3.1 document: what a client written elsewhere may
rely on, and nothing more. The aggregator serves it at ``GET /openapi.json``; the tests
validate it (openapi-spec-validator) and run Schemathesis against a live aggregator; the
README's protocol table is ``markdown_table()`` of it (a test checks they agree).

``python -m contract.openapi`` prints the document, ``--markdown`` the README table."""

from __future__ import annotations

import argparse
import json

from contract import wire
from contract.errors import (
    IncompatibleUpdate,
    MalformedRequest,
    NotSelected,
    PayloadTooLarge,
    RoundConflict,
    RunFailed,
    SessionSuperseded,
    StageClosed,
    TrainingFinished,
    Unauthorized,
)
from contract.messages import (
    INIT_ADOPTED,
    INIT_IGNORED,
    MODEL_NOT_YET,
    UPDATE_ACCEPTED,
    UPDATE_DUPLICATE,
    Phase,
)

DEFAULT_MAX_LONG_POLL_S = 120.0
_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
_ERRORS = {400: [MalformedRequest], 401: [Unauthorized], 409: [RoundConflict, NotSelected],
           410: [TrainingFinished, RunFailed], 413: [PayloadTooLarge], 422: [IncompatibleUpdate]}



_SECAGG_CONFLICTS = [SessionSuperseded, StageClosed]  # 409s of the /v1/secagg stages only


def _error_codes() -> list[str]:
    classes = [cls for listed in _ERRORS.values() for cls in listed] + _SECAGG_CONFLICTS
    return sorted({cls.code for cls in classes})


# The safetensors ``__metadata__`` keys each body carries (all values are strings).
INIT_METADATA = {
    wire.META_CLIENT_ID: (True, "the sending client's id, 0..num_clients-1"),
    wire.META_PARTITION: (False, 'JSON {"examples": n, "labels": [per-class counts]}, for the '
                                 "report"),
    wire.META_SETTINGS: (False, "JSON object: how the client trains, for the report"),
    wire.META_ARCHITECTURE: (False, "the model as Keras JSON (to_json()), exported with the "
                                    "final weights"),
}
UPDATE_METADATA = {
    wire.META_CLIENT_ID: (True, "the sending client's id"),
    wire.META_ROUND: (True, "the open round this update trains for (1-based)"),
    wire.META_NUM_EXAMPLES: (True, "positive integer: the FedAvg weight"),
    wire.META_METRICS: (False, "JSON object of finite numbers (held-out metrics)"),
    wire.META_LOCAL_STEPS: (False, "positive integer: optimizer steps behind the update "
                                   "(required by fednova)"),
    wire.META_MOMENTUM: (False, "number in [0, 1): the SGD momentum of those steps"),
    wire.META_PRIVACY: (False, "dp=example: JSON object {epsilon, delta, steps, exhausted, "
                               "noise_multiplier} of non-negative numbers: the site's DP-SGD "
                               "ledger"),
}
MODEL_METADATA = {wire.META_ROUND: (True, "the model version")}


def document(max_long_poll_s: float = DEFAULT_MAX_LONG_POLL_S, rounds: int | None = None,
             num_clients: int | None = None, secure: bool | None = None) -> dict:
    """The OpenAPI 3.1 document of protocol v1. An aggregator states its own limits: the cap
    on ``wait``, and the run's ``rounds`` and ``num_clients`` bound model versions and client
    ids, and lists the ``/v1/secagg`` endpoints only when it runs secure aggregation (the
    generic document, for the README, leaves the limits open and lists them)."""
    doc = _plain_document(max_long_poll_s, rounds, num_clients)
    if secure is not False:
        doc["paths"].update(_secagg_paths(max_long_poll_s, rounds, num_clients))
    return doc


def _plain_document(max_long_poll_s: float, rounds: int | None, num_clients: int | None
                    ) -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "fl-on-kubeflow aggregator", "version": wire.PROTOCOL_VERSION,
                 "description": _DESCRIPTION},
        "paths": {
            "/healthz": {"get": _public("Liveness", {200: _json({"$ref": "#/components/"
                                                                  "schemas/Health"})})},
            "/openapi.json": {"get": _public("This document", {200: _json({"type": "object"})})},
            "/metrics": {"get": _public("Prometheus text exposition", {
                200: {"description": "metrics", "content": {"text/plain": {
                    "schema": {"type": "string"}}}}})},
            "/": {"get": _public("A human status page (no secrets)", {
                200: {"description": "page", "content": {"text/html": {
                    "schema": {"type": "string"}}}}})},
            "/v1/status": {"get": _guarded("Where the run is", {
                200: _json({"$ref": "#/components/schemas/Status"})})},
            "/v1/init": {"post": _guarded(
                "Offer model version 0 (the first valid init is adopted)", {
                    INIT_ADOPTED: _json(_adopted(True), "adopted as model version 0"),
                    INIT_IGNORED: _json(_adopted(False), "a model was adopted before"),
                }, errors=(400, 410, 413, 422), body=_tensor_body(INIT_METADATA))},
            "/v1/model": {"get": _guarded("Long-poll for a model version", {
                200: {"description": "the model, safetensors with metadata "
                                     + _keys(MODEL_METADATA), "content": _BINARY,
                      "x-safetensors-metadata": _metadata(MODEL_METADATA)},
                MODEL_NOT_YET: {"description": "not published within `wait` seconds"},
            }, errors=(400, 409, 410), parameters=_model_parameters(max_long_poll_s, rounds),
                why={409: "a newer version superseded it", 410: "round > rounds, or the run "
                     "failed"})},
            "/v1/update": {"post": _guarded("Send this round's update", {
                UPDATE_ACCEPTED: _json(_outcome("accepted"), "folded into the round"),
                UPDATE_DUPLICATE: _json(_outcome("duplicate"), "an identical re-send"),
            }, errors=(400, 409, 410, 413, 422), body=_tensor_body(UPDATE_METADATA),
                why={409: "not the open round, a different update for it, or a client the "
                     "round did not sample (not_selected)", 422: "names, "
                     "shapes or dtypes differ from the model's, NaN/Inf values, a bad "
                     "num_examples"})},
            "/v1/done": {"post": _guarded("After fetching the final model: report its test "
                                          "metrics", {
                200: _json(_outcome("ok"), "recorded (repeating overwrites)"),
            }, errors=(400, 410, 413), body={"required": True, "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Done"}}}})},
        },
        "components": {"schemas": _schemas(num_clients),
                       "securitySchemes": {"bearer": {
                           "type": "http", "scheme": "bearer", "description": (
                               "A client's own token, fl1.<client id>.<mac> (HMAC-SHA256 of "
                               "the run secret over 'fl-client:<client id>', base64url), or "
                               "the run secret itself (operators). A client's token may "
                               "read every call but init, update and done only for its own "
                               "client id: another id is 401.")}}},
    }


_DESCRIPTION = (
    "Protocol v1 of the federated aggregator. Tensors travel as safetensors bodies "
    "(application/octet-stream), never as JSON; metadata lives in the safetensors header, all "
    "values strings (x-safetensors-metadata lists the keys of each body). Tensor names are the "
    "model's weights in order (w000, w001, ...); the first init fixes names, shapes and dtypes; "
    "an update may carry any float tensor as float16. Under strategy scaffold a served model "
    "also carries control/<name> tensors and an update must carry the same names. Every "
    "refusal is JSON {error, detail} and leaves the state exactly as it was. Clients rely on "
    "status codes first, then on the documented JSON fields only.")

def _schemas(num_clients: int | None) -> dict:
    schemas = json.loads(json.dumps(_SCHEMAS))
    if num_clients is not None:
        for name in ("Done", "KeyAdvert"):
            schemas[name]["properties"]["client_id"]["maximum"] = num_clients - 1
    return schemas


_METRICS = {"type": "object", "maxProperties": wire.MAX_METRICS,
            "propertyNames": {"pattern": "^" + wire.METRIC_NAME.pattern + "$",
                              "not": {"enum": sorted(wire.RESERVED_METRIC_NAMES)}},
            "additionalProperties": {"type": "number"}}
_KEY = {"type": "string", "pattern": "^[A-Za-z0-9+/]{43}=$"}
_SCHEMAS = {
    "Health": {"type": "object", "required": ["status"],
               "properties": {"status": {"const": "ok"}}},
    "Status": {
        "type": "object",
        "required": ["round", "rounds", "phase", "model_version", "num_clients",
                     "min_clients", "strategy", "reported", "done", "last_metrics", "error"],
        "properties": {
            "round": {"type": "integer", "minimum": 0,
                      "description": "the open round (1-based), 0 before init; the last "
                                     "version once training is over"},
            "rounds": {"type": "integer", "minimum": 1},
            "phase": {"enum": [p.value for p in Phase]},
            "model_version": {"type": "integer", "minimum": -1,
                              "description": "-1 before the first init"},
            "num_clients": {"type": "integer", "minimum": 1},
            "min_clients": {"type": "integer", "minimum": 1},
            "strategy": {"type": "string"},
            "reported": {"type": "array", "items": {"type": "integer"},
                         "description": "client ids with an update in the open round"},
            "done": {"type": "array", "items": {"type": "integer"}},
            "last_metrics": _METRICS,
            "error": {"type": ["string", "null"], "description": "why the run failed"},
            "secure_aggregation": {"enum": ["off", "secagg"], "description": "secagg: "
                                   "updates go through /v1/secagg/*, never /v1/update"},
            "secagg_session": {"type": "string", "description": "the open round's "
                               "secure-aggregation session (empty when none)"},
            "secagg_stage": {"enum": ["", "keys", "shares", "masked", "unmask", "done"]},
            "final_version": {"type": "integer", "minimum": 0, "description": "the model "
                              "version training ends at: rounds, or earlier when the privacy "
                              "budget ended it"},
            "dp": {"enum": ["off", "example", "client"]},
            "epsilon": {"type": "number", "minimum": 0, "description": "ε spent so far at the "
                        "run's δ (dp=example: the largest of the sites')"},
            "dp_steps": {"type": "object", "additionalProperties": {"type": "integer"},
                         "description": "client id -> DP-SGD steps the aggregator recorded "
                         "(a restarted client resumes its budget from them)"},
            "stopped": {"type": "string", "description": "why training ended before the "
                        "last round (empty: it did not)"},
            "selected": {"type": "array", "items": {"type": "integer", "minimum": 0},
                         "description": "the clients sampled to train in the open round "
                         "(all of them unless fraction_fit < 1); another client's update is "
                         "409 not_selected: it waits for the round's model"},
            "fraction_fit": {"type": "number", "exclusiveMinimum": 0, "maximum": 1,
                             "description": "share of the clients sampled per round"},
        },
    },
    "KeyAdvert": {
        "type": "object", "required": ["client_id", "round", "cipher_key", "mask_key"],
        "properties": {
            "client_id": {"type": "integer", "minimum": 0},
            "round": {"type": "integer", "minimum": 1},
            "cipher_key": {**_KEY, "description": "X25519 public key (32 bytes, base64) for "
                           "the shares sealed to this client"},
            "mask_key": {**_KEY, "description": "X25519 public key (32 bytes, base64) for "
                         "pairwise masks; differs from cipher_key"},
            "session": {"type": "string", "pattern": "^[0-9a-f]{1,64}$", "description":
                        "on a re-send only: the session the keys were accepted in (another "
                        "session is 409 session_superseded: fresh keys are needed)"},
        },
    },
    "Session": {"type": "object", "required": ["session"],
                "properties": {"session": {"type": "string", "pattern": "^[0-9a-f]+$"}}},
    "Roster": {
        "type": "object",
        "required": ["session", "round", "threshold", "neighbours", "clip", "max_examples",
                     "participants"],
        "properties": {
            "session": {"type": "string"}, "round": {"type": "integer"},
            "threshold": {"type": "integer", "description": "shares that rebuild a secret"},
            "neighbours": {"type": "integer", "description": "ring size (others per client)"},
            "clip": {"type": "number"}, "max_examples": {"type": "integer"},
            "participants": {"type": "object", "description": "client id -> {cipher_key, "
                             "mask_key}, base64"},
        },
    },
    "UnmaskRequest": {
        "type": "object", "required": ["round", "session", "survivors", "dropped"],
        "properties": {
            "round": {"type": "integer"}, "session": {"type": "string"},
            "survivors": {"type": "array", "items": {"type": "integer"}, "description":
                          "sent a masked input: give the shares of their self-mask seeds"},
            "dropped": {"type": "array", "items": {"type": "integer"}, "description":
                        "shared but sent no masked input: give the shares of their mask "
                        "keys (never both for one client)"},
        },
    },
    "Done": {
        "type": "object", "required": ["client_id"],
        "properties": {
            "client_id": {"type": "integer", "minimum": 0},
            "metrics": _METRICS,
            "num_examples": {"type": "integer", "minimum": 1, "default": 1},
            "counts": {"type": ["object", "null"], "description": "confusion_matrix (k x k counts "
                       "summing to num_examples) and, for two classes, roc {thresholds, tp, "
                       "fp}; multi-label: labels [names] and per_label [one binary "
                       "{confusion_matrix, roc} per label, over its unmasked examples]"},
        },
    },
    "Outcome": {"type": "object", "required": ["status"],
                "properties": {"status": {"type": "string"}}},
    "Error": {"type": "object", "required": ["error", "detail"],
              "properties": {"error": {"type": "string", "description": (
                  "a stable code: " + ", ".join(_error_codes())
                  + " (and the generic HTTP ones, e.g. method_not_allowed)")},
                  "detail": {"type": "string"}}},
}


SHARES_METADATA = {
    wire.META_CLIENT_ID: (True, "the sending client's id"),
    wire.META_ROUND: (True, "the open round"),
    "session": (True, "the session of the roster"),
}
MASKED_METADATA = {**SHARES_METADATA,
                   "metric_names": (False, "JSON list: the metrics after the weight word")}
_STAGE_WHY = {409: "not the open round, a superseded session (session_superseded: advertise "
                   "fresh keys), a stage that closed without this client or is not open yet "
                   "(stage_closed: the client waits for the round's model), or a different "
                   "body for the same stage",
              410: "training is over or the run failed"}


def _secagg_paths(max_long_poll_s: float, rounds: int | None, num_clients: int | None
                  ) -> dict:
    """The four secure-aggregation stages (``contract.secagg.messages``)."""
    poll = _round_parameters(max_long_poll_s, rounds)
    client = [{"name": "client_id", "in": "query", "required": True,
               "schema": _client_id_schema(num_clients), "description": "whose shares"}]
    posted = {202: _json(_outcome("accepted"), "new"),
              200: _json(_outcome("duplicate"), "an identical re-send")}
    not_yet = {MODEL_NOT_YET: {"description": "the stage is still open after `wait` seconds"}}

    def binary_post(summary: str, keys: dict, extra_errors: tuple = ()) -> dict:
        return {"post": _guarded(summary, posted, errors=(400, 409, 410, 413, *extra_errors),
                                 body=_tensor_body(keys), why=_STAGE_WHY)}

    return {
        "/v1/secagg/keys": {"post": _guarded(
            "Secure aggregation, stage 1: advertise this round's two fresh public keys", {
                202: _json({"$ref": "#/components/schemas/Session"}, "accepted"),
                200: _json({"$ref": "#/components/schemas/Session"}, "an identical re-send"),
            }, errors=(400, 409, 410, 413), why=_STAGE_WHY, body={
                "required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/KeyAdvert"}}}})},
        "/v1/secagg/roster": {"get": _guarded(
            "Long-poll for the key stage's result: every participant's public keys", {
                200: _json({"$ref": "#/components/schemas/Roster"}), **not_yet,
            }, errors=(400, 409, 410), parameters=poll, why=_STAGE_WHY)},
        "/v1/secagg/shares": {
            **binary_post("Stage 2: sealed shares (AES-GCM), tensors to/<holder id>, uint8",
                          SHARES_METADATA),
            "get": _guarded("Long-poll for the shares sealed for client_id (tensors "
                            "from/<sender id>; metadata survivors)", {
                200: {"description": "safetensors", "content": _BINARY}, **not_yet,
            }, errors=(400, 409, 410), parameters=poll + client, why=_STAGE_WHY)},
        "/v1/secagg/masked": binary_post(
            "Stage 3: the masked vector, tensor masked, uint32 [parameters + 1 + metrics]",
            MASKED_METADATA, (422,)),
        "/v1/secagg/unmask": {
            "get": _guarded("Long-poll for who survived and who dropped", {
                200: _json({"$ref": "#/components/schemas/UnmaskRequest"}), **not_yet,
            }, errors=(400, 409, 410), parameters=poll, why=_STAGE_WHY),
            **binary_post("Stage 4: shares of survivors' seeds (seed/<id>) and of dropped "
                          "clients' mask keys (key/<id>), uint8", SHARES_METADATA)},
    }


def _client_id_schema(num_clients: int | None) -> dict:
    schema = {"type": "integer", "minimum": 0}
    if num_clients is not None:
        schema["maximum"] = num_clients - 1
    return schema


def _round_parameters(max_long_poll_s: float, rounds: int | None) -> list:
    round_ = {"type": "integer", "minimum": 1}
    if rounds is not None:
        round_["maximum"] = rounds
    return [{"name": "round", "in": "query", "required": True, "schema": round_,
             "description": "the open round"},
            {"name": "wait", "in": "query", "required": False,
             "schema": {"type": "number", "default": 0},
             "description": f"seconds to wait, cut to [0, {max_long_poll_s:g}]"}]


def _public(summary: str, responses: dict) -> dict:
    return {"summary": summary, "security": [], "responses": _responses(responses)}


def _guarded(summary: str, responses: dict, *, errors=(), body: dict | None = None,
             parameters: list | None = None, why: dict[int, str] | None = None) -> dict:
    """A token-guarded operation; ``why`` says when it answers an error status."""
    why = {401: "no token, a wrong one, or a client's token used for another client id",
           **(why or {})}
    refusals = {status: _error(status, why.get(status)) for status in (401, *errors)}
    operation = {"summary": summary, "security": [{"bearer": []}],
                 "responses": _responses({**responses, **refusals})}
    if body is not None:
        operation["requestBody"] = body
    if parameters:
        operation["parameters"] = parameters
    return operation


def _responses(responses: dict) -> dict:
    return {str(code): value for code, value in sorted(responses.items())}


def _error(status: int, why: str | None = None) -> dict:
    codes = ", ".join(sorted(cls.code for cls in _ERRORS[status]))
    return _json({"$ref": "#/components/schemas/Error"},
                 f"refused ({codes}{': ' + why if why else ''})")


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _adopted(value: bool) -> dict:
    return {"type": "object", "required": ["adopted"],
            "properties": {"adopted": {"const": value}}}


def _outcome(value: str) -> dict:
    return {"allOf": [{"$ref": "#/components/schemas/Outcome"},
                      {"properties": {"status": {"const": value}}}]}


def _metadata(keys: dict) -> dict:
    return {key: {"required": required, "description": text}
            for key, (required, text) in keys.items()}


def _keys(keys: dict) -> str:
    parts = [f"`{k}`" if required else f"optional `{k}`" for k, (required, _) in keys.items()]
    return ", ".join(parts)


def _tensor_body(keys: dict) -> dict:
    return {"required": True, "description": "safetensors with metadata " + _keys(keys),
            "content": _BINARY, "x-safetensors-metadata": _metadata(keys)}


def _model_parameters(max_long_poll_s: float, rounds: int | None) -> list:
    version = {"type": "integer", "minimum": 0}
    if rounds is not None:
        version["maximum"] = rounds
    return [
        {"name": "round", "in": "query", "required": True, "schema": version,
         "description": "the model version (the final one is `rounds`)"},
        {"name": "wait", "in": "query", "required": False,
         "schema": {"type": "number", "default": 0},
         "description": f"seconds to wait for it, cut to [0, {max_long_poll_s:g}]"},
    ]


def markdown_table(doc: dict | None = None) -> str:
    """The README's protocol table: one row per operation, its body and its answers."""
    doc = doc or document()
    rows = ["| call | token | body | answers |", "|---|---|---|---|"]
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            query = "&".join(f"{p['name']}=…" for p in op.get("parameters", []))
            call = f"{method.upper()} {path}" + (f"?{query}" if query else "")
            answers = "; ".join(f"{code} {_answer(doc, r)}" for code, r in op["responses"].items())
            rows.append(f"| `{call}` | {'yes' if op['security'] else 'no'} | "
                        f"{_body(doc, op.get('requestBody'))} | {answers} |")
    return "\n".join(rows)


def _body(doc: dict, body: dict | None) -> str:
    if body is None:
        return ""
    if "application/json" in body["content"]:
        return _fields(doc, body["content"]["application/json"]["schema"])
    return body["description"]


def _answer(doc: dict, response: dict) -> str:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    if "$ref" in schema and not response["description"].startswith("refused"):
        return _fields(doc, schema)
    return response["description"]


def _fields(doc: dict, schema: dict) -> str:
    """``JSON Name: `a`, optional `b` ...`` of a referenced schema."""
    name = schema["$ref"].rsplit("/", 1)[-1]
    target = doc["components"]["schemas"][name]
    required = set(target.get("required", []))
    parts = []
    for field, spec in target["properties"].items():
        label = f"`{field}`" if field in required else f"optional `{field}`"
        if "enum" in spec:
            label += " (" + "/".join(spec["enum"]) + ")"
        parts.append(label)
    return f"JSON {name}: " + ", ".join(parts)


def main() -> None:
    """Print the OpenAPI document as JSON, or with ``--markdown`` the README's protocol table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="the README's protocol table")
    args = parser.parse_args()
    print(markdown_table() if args.markdown else json.dumps(document(), indent=2))


if __name__ == "__main__":
    main()
