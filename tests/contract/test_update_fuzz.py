"""Property test: whatever bytes and headers arrive at /v1/update, the aggregator answers
4xx JSON (never 5xx) and its state does not change."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import wire
from server_component.app import create_app
from server_component.coordinator import RoundCoordinator
from tests.support.live_aggregator import TOKEN, small_weights

coordinator = RoundCoordinator(2, 3)
coordinator.submit_init(wire.Message(small_weights(), {"client_id": "0"}))
client = create_app(coordinator, token=TOKEN, max_update_bytes=4096).test_client()
VALID = wire.encode(small_weights(), wire.UpdateMeta(0, 1, 5).to_metadata())

header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
bodies = st.one_of(
    st.binary(max_size=600),
    # Valid-looking prefixes with garbage after them reach deeper into the parser.
    st.builds(lambda cut, tail: VALID[:cut] + tail,
              st.integers(0, len(VALID)), st.binary(max_size=64)),
    st.builds(lambda n, rest: n.to_bytes(8, "little") + rest,
              st.integers(0, 2**64 - 1), st.binary(max_size=200)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, content_type=header_values, auth=st.sampled_from(
    [f"Bearer {TOKEN}", "Bearer wrong", "", "Basic abc", f"bearer {TOKEN}"]))
def test_random_updates_never_5xx_and_never_change_state(body, content_type, auth):
    before = coordinator.status()
    response = client.post("/v1/update", data=body,
                           headers={"Content-Type": content_type, "Authorization": auth})
    assert 400 <= response.status_code < 500 or response.status_code in (200, 202)
    if response.status_code >= 400:
        assert set(response.get_json()) == {"error", "detail"}
        assert coordinator.status() == before


def test_the_fuzzer_can_reach_acceptance():
    # Sanity: the valid body the fuzzer mutates is accepted, so refusals above are real.
    fresh = RoundCoordinator(2, 3)
    fresh.submit_init(wire.Message(small_weights(), {"client_id": "0"}))
    app = create_app(fresh, token=TOKEN).test_client()
    response = app.post("/v1/update", data=VALID, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 202
    np.testing.assert_array_equal(fresh.status().reported, [0])
