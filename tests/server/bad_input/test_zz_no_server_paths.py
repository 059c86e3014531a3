"""Findings 1 and 6: no error body the suite received and no log line the server wrote shows one of the server's own
absolute paths (its folders, its source tree) or a traceback. Runs last in the package (file name), so it sees the
whole suite's traffic; it makes a few path-prone requests of its own so that it also checks something alone."""

from __future__ import annotations

import time

from tests.server.bad_input.conftest import REPO, Served
from tests.server.bad_input.wire import zip_of_zeros
from tests.server.helpers import ADMIN_HEADERS


def test_no_error_body_or_log_line_shows_a_server_path_or_a_traceback(served: Served) -> None:
    with served.client() as http:
        http.post("/v1/jobs", files={"file": ("x.zip", zip_of_zeros("x/dataset.json", 0))})
        http.post("/v1/jobs", json={"path": "missing/folder"})
        http.post("/v1/model/reload", json={"model": "missing"}, headers=ADMIN_HEADERS)
        http.get("/v1/jobs/nope/results")
        http.get("/v1/model")  # backend_info names the model's file
        time.sleep(1.0)  # the job fails in the background
        http.get("/v1/jobs")
    own_paths = [str(p) for p in (*served.folders.values(), served.log_path.parent, REPO)]
    texts = {"body": served.bodies, "log": served.log().splitlines()}
    leaks = [(kind, text[:200]) for kind, lines in texts.items() for text in lines if any(p in text for p in own_paths)]
    assert len(served.bodies) >= 6
    assert not leaks
    assert "Traceback" not in served.log()
