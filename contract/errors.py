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
        """The reply body: ``{"error": code, "detail": text}``."""
        return {"error": self.code, "detail": self.detail}


class MalformedRequest(ProtocolError):
    """400: a body, header or query parameter that cannot be parsed, or an unknown client id."""

    status, code = 400, "malformed"


class Unauthorized(ProtocolError):
    """401: a missing or wrong bearer token."""

    status, code = 401, "unauthorized"


class RoundConflict(ProtocolError):
    """409: out of step: no round open yet (no init), a round that is not the open one, a
    superseded model version, or a client's second, different update for the same round."""

    status, code = 409, "round_conflict"


class TrainingFinished(ProtocolError):
    """410: training is over: an update after the last round, or a model version past it."""

    status, code = 410, "training_finished"


class PayloadTooLarge(ProtocolError):
    """413: a request body over the aggregator's size limit."""

    status, code = 413, "payload_too_large"


class IncompatibleUpdate(ProtocolError):
    """422: a well-formed update the run cannot use: tensors that do not match the model or
    hold NaN or Inf, a bad example count, local steps or momentum, or without the tensors
    its strategy needs (SCAFFOLD's control variates)."""

    status, code = 422, "incompatible_update"


class RunFailed(TrainingFinished):
    """The run failed (a round missed its quorum); nothing more will be accepted."""

    code = "run_failed"


class SessionSuperseded(RoundConflict):
    """409: a secure-aggregation message for a session the aggregator no longer runs (it
    restarted the round's secure aggregation): start the round's stages again, fresh keys."""

    code = "session_superseded"


class StageClosed(RoundConflict):
    """409: a secure-aggregation stage that already closed without this client (it missed
    the deadline), or one that is not open yet (a client skipping a stage): this client
    does not take part in the round; it waits for the round's model."""

    code = "stage_closed"


class NotSelected(RoundConflict):
    """409: an update from a client the round did not sample (``fraction_fit`` < 1): it
    waits for the round's model and asks again next round (``/v1/status`` ``selected``)."""

    code = "not_selected"
