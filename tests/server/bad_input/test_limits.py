"""Finding 3: limits before work. Small inputs that would decode, decompress or unpack to hundreds of megabytes are
refused from their headers and declared sizes; the server's peak memory stays bounded and nothing stays on disk."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.server.bad_input.conftest import Served
from tests.server.bad_input.wire import frame_with, lz4_of_zeros, png_declaring, send_bad, zip_of_zeros, zstd_of_zeros

MIB = 2**20

BOMBS: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "png_colour_16384x16384": (
        lambda: frame_with(color_codec="png", color=png_declaring(16384, 16384)),
        "wrong_resolution",
        "expected colour 120x160, got 16384x16384",
    ),
    "zstd_depth_shape_past_the_hello": (
        lambda: frame_with(depth=zstd_of_zeros(512 * MIB), depth_shape=[16384, 16384]),
        "malformed_message",
        "depth_shape.0: Input should be less than or equal to 8192",
    ),
    "zstd_depth_shape_unlike_the_hello": (
        lambda: frame_with(depth=zstd_of_zeros(128 * MIB), depth_shape=[8192, 8192]),
        "wrong_resolution",
        r"expected depth 120x160, got depth_shape [8192, 8192]",
    ),
    "lz4_depth_of_512_mib": (
        lambda: frame_with(depth_codec="lz4", depth=lz4_of_zeros(512 * MIB)),
        "bad_frame",
        "expected depth uint16 (120, 160) = 38400 bytes, got more",
    ),
}


@pytest.mark.parametrize("case", sorted(BOMBS))
def test_stream_decompression_bomb_is_refused_before_the_work(served: Served, case: str) -> None:
    make, code, message = BOMBS[case]
    error, window = send_bad(served, make())
    assert (error.code, error.fatal) == (code, False)
    assert message in error.message, error.message
    assert window == 2  # the session went on with its tokens
    served.assert_still_serving()


def test_upload_unpacking_past_the_job_disk_quota_is_refused_before_extraction(served: Served) -> None:
    bomb = zip_of_zeros("bomb/depth.bin", 100 * MIB)  # about 100 KB on the wire
    jobs_before = sorted(p.name for p in served.folders["jobs"].iterdir())
    with served.client() as http:
        answer = http.post("/v1/jobs", files={"file": ("bomb.zip", bomb)})
    assert len(bomb) < MIB
    assert answer.status_code == 413 and answer.json()["code"] == "message_too_large"
    assert f"would unpack to {100 * MIB} bytes; this job may use at most" in answer.json()["message"]
    assert sorted(p.name for p in served.folders["jobs"].iterdir()) == jobs_before  # no job, no files
    served.assert_still_serving()
