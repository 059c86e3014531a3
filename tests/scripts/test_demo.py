"""scripts/demo.py without libusb: it chooses the dataset-folder recording (saying the one command that enables
RealSense recordings), and that folder is a source the playback client opens without pyrealsense2."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from rgbd import DatasetSource, open_source

REPOSITORY = Path(__file__).resolve().parents[2]
LIBUSB_MISSING = "libusb-1.0.so.0: cannot open shared object file: No such file or directory"


@pytest.fixture(scope="module")
def demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("r3d_demo", REPOSITORY / "scripts" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_auto_recording_is_db3_when_pyrealsense2_loads(demo: ModuleType) -> None:
    assert demo.choose_recording("auto", None) == "db3"


def test_auto_recording_without_libusb_is_the_folder_and_says_what_to_install(
    demo: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert demo.choose_recording("auto", LIBUSB_MISSING) == "folder"
    out = capsys.readouterr().out
    assert "streaming the dataset folder instead" in out
    assert "run: sudo apt-get install -y libusb-1.0-0" in out


def test_db3_recording_asked_for_without_libusb_exits_with_a_message(demo: ModuleType) -> None:
    with pytest.raises(SystemExit, match=r"--recording db3 needs pyrealsense2.*use --recording folder"):
        demo.choose_recording("db3", LIBUSB_MISSING)


def test_folder_recording_is_a_dataset_sequence_the_client_opens_without_pyrealsense2(
    demo: ModuleType, tmp_path: Path
) -> None:
    source_path, labels = demo.synthesise(tmp_path, seconds=2.0, seed=7, recording="folder")
    assert source_path.parent.name == "sequences" and labels == source_path / "labels.csv" and labels.is_file()
    assert not (tmp_path / "data" / "recordings").exists()
    with open_source(source_path) as source:
        assert isinstance(source, DatasetSource)
        frames = list(source)
    assert len(frames) == 30 and frames[0].depth.dtype.name == "uint16"
