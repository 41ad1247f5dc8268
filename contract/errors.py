"""Typed protocol errors: each maps to one HTTP status and a stable error code."""

from __future__ import annotations


class ProtocolError(Exception):
    """A request the aggregator refuses; state is left exactly as it was."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def to_json(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.detail}


class MalformedRequest(ProtocolError):
    status, code = 400, "malformed"


class Unauthorized(ProtocolError):
    status, code = 401, "unauthorized"


class RoundConflict(ProtocolError):
    status, code = 409, "round_conflict"


class TrainingFinished(ProtocolError):
    status, code = 410, "training_finished"


class PayloadTooLarge(ProtocolError):
    status, code = 413, "payload_too_large"


class IncompatibleUpdate(ProtocolError):
    status, code = 422, "incompatible_update"


class RunFailed(TrainingFinished):
    """The run failed (a round missed its quorum); nothing more will be accepted."""

    code = "run_failed"
