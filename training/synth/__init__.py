"""The synthetic RGB-D activity world: an articulated person acting out activities in a room, rendered to colour
and to depth in millimetres with sensor artefacts, written in the common dataset format (`r3d-data synth`)."""

from __future__ import annotations

from training.synth.actions import ACTIONS
from training.synth.generate import GenerateResult, generate_dataset
from training.synth.grammar import ACTIVITIES
from training.synth.world import SynthConfig, SynthSequence

__all__ = ["ACTIONS", "ACTIVITIES", "GenerateResult", "SynthConfig", "SynthSequence", "generate_dataset"]
