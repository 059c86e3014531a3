"""Finding 4: the API key never reaches the log, though ``?api_key=`` is the documented way for WebSockets."""

from __future__ import annotations

import time

import httpx

from tests.server.bad_input.conftest import Served
from tests.server.conftest import API_KEY
from tests.server.helpers import open_ws, start


def test_api_key_in_the_query_is_redacted_in_the_log(served: Served) -> None:
    with open_ws(f"{served.ws_url}?api_key={API_KEY}", headers={}) as ws:  # the key in the URL only
        welcome = start(ws)
    status = httpx.get(f"{served.url}/v1/model?api_key={API_KEY}", timeout=30).status_code
    time.sleep(0.5)  # the access log line is written after the response
    log = served.log()
    assert welcome.session_id and status == 401  # REST takes keys from headers only
    assert API_KEY not in log
    assert "/v1/stream?api_key=[redacted]" in log and "/v1/model?api_key=[redacted]" in log
    served.assert_still_serving()
