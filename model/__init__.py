"""The R3D network and everything needed to run it. Depends on torch, numpy and OpenCV (frame decoding) only."""

from __future__ import annotations

from model.backbones import BACKBONES, build_backbone
from model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from model.decoding import TimedAction, Transcript, decode_frames, decode_timed, decode_transcript
from model.errors import BackboneError, CheckpointError, ConfigError, ImageDecodeError, R3DError, WindowTooLongError
from model.preprocess import Preprocessing, prepare_inputs, preprocess_depth, preprocess_rgb
from model.r3d import FUSIONS, R3D, Anticipator, AnticipatorOutput, FrameEncoder, R3DConfig
from model.rank import RankGain, effective_rank, rank_gain
from model.rtf import TokenFuser

__all__ = [
    "BACKBONES",
    "FUSIONS",
    "R3D",
    "Anticipator",
    "AnticipatorOutput",
    "BackboneError",
    "CheckpointError",
    "ConfigError",
    "FrameEncoder",
    "ImageDecodeError",
    "Preprocessing",
    "R3DConfig",
    "R3DError",
    "RankGain",
    "TimedAction",
    "TokenFuser",
    "Transcript",
    "WindowTooLongError",
    "build_backbone",
    "decode_frames",
    "decode_timed",
    "decode_transcript",
    "effective_rank",
    "load_checkpoint",
    "prepare_inputs",
    "preprocess_depth",
    "preprocess_rgb",
    "rank_gain",
    "read_checkpoint",
    "save_checkpoint",
]
