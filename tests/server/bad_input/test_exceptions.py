"""Finding 6: inputs that used to raise inside the server get their 4xx error, and the WebSocket stays open."""

from __future__ import annotations

from tests.server.bad_input.conftest import Served
from tests.server.bad_input.wire import frame_with, send_bad


def test_stream_negative_depth_shape_is_a_malformed_message_and_the_stream_goes_on(served: Served) -> None:
    error, window = send_bad(served, frame_with(depth_codec="raw", depth=b"", depth_shape=[-4, 160]))
    assert (error.code, error.fatal, window) == ("malformed_message", False, 2)
    assert "depth_shape.0: Input should be greater than 0" in error.message
    served.assert_still_serving()


def test_stream_megabyte_of_nested_json_is_a_malformed_message_and_the_stream_goes_on(served: Served) -> None:
    error, window = send_bad(served, "[" * 2**20)
    assert (error.code, error.fatal, window) == ("malformed_message", False, 2)
    assert error.message == "expected a JSON text map, got nesting too deep to decode"
    served.assert_still_serving()


def test_post_frame_with_negative_depth_shape_is_400_not_500(served: Served) -> None:
    with served.client() as http:
        sid = http.post("/v1/sessions", json={"width": 160, "height": 120, "depth_scale": 0.001}).json()["id"]
        answer = http.post(f"/v1/sessions/{sid}/frames", content=frame_with(depth_codec="raw", depth_shape=[-1, 5]))
        http.delete(f"/v1/sessions/{sid}")
    assert answer.status_code == 400 and answer.json()["code"] == "malformed_message"
    assert "depth_shape.0: Input should be greater than 0" in answer.json()["message"]
    served.assert_still_serving()


def test_nested_json_body_on_rest_is_400_not_500(served: Served) -> None:
    with served.client() as http:
        answer = http.post("/v1/sessions", content="[" * 2**20, headers={"content-type": "application/json"})
    assert answer.status_code == 400 and answer.json()["code"] == "bad_request"
    served.assert_still_serving()
