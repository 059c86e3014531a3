"""The UTD-MHAD benchmark command end to end on .mat fixtures in the original layout (written here, never the real
data): import, feature cache, training, causal per-clip evaluation with bootstrap intervals, and the generated
report; a second run reuses the work folder without retraining."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.training.test_importers_utd_mhad import write_clip
from tests.training.train_fixtures import one_thread
from training.utd_mhad_report import (
    CLIP_RULE,
    CLIP_RULES,
    bootstrap_interval,
    chosen_run,
    clip_scores,
    main,
    paired_against,
    pooled_by_recipe,
    render_recipe_choice,
)


def test_bootstrap_interval_of_a_constant_is_that_constant_and_brackets_a_mix() -> None:
    assert bootstrap_interval([(1.0, 1.0)] * 10) == (1.0, 1.0)
    lo, hi = bootstrap_interval([(1.0, 1.0)] * 50 + [(0.0, 1.0)] * 50)
    assert 0.35 < lo < 0.5 < hi < 0.65
    lo, hi = bootstrap_interval([(3.0, 4.0), (0.0, 4.0)])  # frames pooled over resampled clips
    assert (lo, hi) == (0.0, 0.75)


def test_clip_rules_turn_per_frame_probabilities_into_one_prediction() -> None:
    # class 0 is confident twice and all but ruled out once; class 1 never confident, never ruled out, and last
    probs = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.001, 0.5, 0.499]])
    picks = {rule: int(aggregate(probs).argmax()) for rule, (_, aggregate) in CLIP_RULES.items()}
    assert picks == {"mean": 0, "log_mean": 1, "last": 1}


def clip_row(clip: str, correct: bool, frames: int, frames_correct: int) -> dict[str, object]:
    return {"clip": clip, "truth": 0, "clip_pred": 0 if correct else 1, "frames": frames,
            "frames_correct": frames_correct}  # fmt: skip


def test_paired_difference_against_another_recipe_pairs_the_same_clips() -> None:
    ours = {"clips": [clip_row("a", True, 4, 4), clip_row("b", True, 4, 2), clip_row("c", False, 2, 0)]}
    theirs = {"clips": [clip_row("c", False, 2, 1), clip_row("a", False, 4, 0), clip_row("b", True, 4, 2)]}
    diff = paired_against(ours, theirs)
    assert diff["clip_accuracy"]["difference"] == pytest.approx(1 / 3)  # a won, b and c tied
    assert diff["frame_accuracy"]["difference"] == pytest.approx((4 - 1) / 10)  # +4 frames on a, -1 on c, of 10
    lo, hi = diff["clip_accuracy"]["ci95"]
    assert 0.0 <= lo <= 1 / 3 <= hi <= 1.0
    same = paired_against(ours, ours)
    assert same["clip_accuracy"]["ci95"] == [0.0, 0.0] and same["frame_accuracy"]["verdict"] == "not distinguishable"
    with pytest.raises(SystemExit, match="same test clips"):
        paired_against(ours, {"clips": theirs["clips"][:2]})
    with pytest.raises(SystemExit, match="same test clips"):
        paired_against(ours, {"clips": [clip_row("a", True, 5, 0), *theirs["clips"][1:]]})


def write_raw_folder(raw: Path) -> Path:
    """Depth clips of 8 frames for every subject, 2 actions x 2 trials (16 training and 16 test clips)."""
    for subject in range(1, 9):
        for action in (1, 2):
            for trial in (1, 2):
                write_clip(raw, action, subject, trial, 8, modalities="d")
    return raw


def test_benchmark_command_writes_the_report_from_a_raw_folder(tmp_path: Path) -> None:
    raw = write_raw_folder(tmp_path / "raw")
    out, work = tmp_path / "report", tmp_path / "work"
    argv = ["--raw", str(raw), "--work", str(work), "--out", str(out), "--epochs", "2", "--no-progress",
            "--val-fraction", "0.25"]  # fmt: skip
    with one_thread():
        assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    ev = results["evaluation"]
    assert ev["test_clips"] == 16 and results["split_sizes"]["test"] == 16
    assert results["split_sizes"]["train"] + results["split_sizes"]["val"] == 16
    for scores in (ev["clip_accuracy"], ev["frame_accuracy"], *ev["clip_accuracy_by_rule"].values()):
        lo, hi = scores["ci95"]
        assert 0.0 <= lo <= scores["value"] <= hi <= 1.0
    assert set(ev["clip_accuracy_by_rule"]) == set(CLIP_RULES) == set(results["validation"]["clip_accuracy_by_rule"])
    assert ev["clip_accuracy_by_rule"][CLIP_RULE] == ev["clip_accuracy"]
    last = np.mean([c["rule_preds"]["last"] == c["truth"] for c in ev["clips"]])
    assert ev["clip_accuracy_by_rule"]["last"]["value"] == pytest.approx(last)
    confusion = np.asarray(ev["confusion"])
    assert confusion.shape == (27, 27) and confusion.sum() == 16 and confusion[2:].sum() == 0
    assert ev["clip_accuracy"]["value"] == pytest.approx(np.trace(confusion) / 16)
    assert ev["test_frames"] == sum(c["frames"] for c in ev["clips"]) and {c["subject"] for c in ev["clips"]} == {
        2,
        4,
        6,
        8,
    }
    assert results["validation"]["test_clips"] == results["split_sizes"]["val"]
    timings = results["timings_s"]
    assert timings["import (this invocation)"] > 0 and timings["training (this invocation)"] > 0
    recorded = json.loads((work / "timings.json").read_text())
    assert results["prep_and_train_s"] == pytest.approx(recorded["import"] + recorded["features"] + recorded["train"])
    report = (out / "REPORT.md").read_text()
    assert f"{100 * ev['clip_accuracy']['value']:.1f} %" in report and "cross-subject" in report
    assert "against a target of 30 min: within it." in report
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with one_thread():
        assert main(argv) == 0  # everything reused: no import, no training
    again = json.loads((out / "results.json").read_text())
    assert again["timings_s"]["training (this invocation)"] is None
    assert again["timings_s"]["evaluation (this invocation)"] is None  # the checkpoint did not change
    assert again["evaluation"]["clip_accuracy"] == ev["clip_accuracy"]
    # section 4: three test clips of subject 2 chained and streamed depth-only through the real server
    from benchmarks.utd_mhad_stream import main as stream_main

    argv = ["--work", str(work), "--out", str(out), "--subject", "2", "--clips", "3", "--all-trials"]
    with one_thread():
        assert stream_main(argv) == 0
    streamed = json.loads((out / "streaming.json").read_text())
    assert streamed["clips"] == ["a01_s2_t1", "a01_s2_t2", "a02_s2_t1"] and streamed["frames"] == 24
    assert streamed["ticks_compared"] >= 10 and streamed["live_equals_batch"] == streamed["ticks_compared"]
    delays = streamed["naming_delay_s"]
    assert delays["named"] + len(delays["not_named"]) == 2  # every clip after the first
    assert "live vs batch scoring" in (out / "STREAMING.md").read_text()
    # the recipe's default is the person crop with jitter; the earlier recipe (minmax depth, conv encoder, no jitter)
    # through --set, in its own work folder, set beside the first run on the same test clips
    conv_work, conv_out = tmp_path / "work-conv", tmp_path / "report-conv"
    (conv_work / "dataset").mkdir(parents=True)
    for item in ("dataset.json", "splits.json", "sequences"):
        (conv_work / "dataset" / item).symlink_to(work / "dataset" / item)
    argv = ["--work", str(conv_work), "--out", str(conv_out), "--epochs", "2", "--no-progress",
            "--val-fraction", "0.25", "--set", "model.depth_input=minmax", "--set", "model.person_mask=none",
            "--set", "model.depth_encoder=conv", "--set", "optim.depth_scale_jitter=0",
            "--set", "optim.depth_shift_jitter=0", "--compare-with", str(work)]  # fmt: skip
    with one_thread():
        assert main(argv) == 0
    conv = json.loads((conv_out / "results.json").read_text())
    assert "depth encoder conv, depth input minmax" in conv["model"]["summary"]
    assert "person mask" not in conv["model"]["summary"] and "person crop" not in conv["model"]["summary"]
    comparison = conv["comparison"]
    assert "depth encoder person" in comparison["model"]
    assert "person mask segmented, person crop 32x16" in comparison["model"]
    assert comparison["clip_accuracy"] == ev["clip_accuracy"]
    clip_diff = comparison["difference"]["clip_accuracy"]
    assert clip_diff["difference"] == pytest.approx(
        conv["evaluation"]["clip_accuracy"]["value"] - ev["clip_accuracy"]["value"]
    )
    trained = "2 epochs on 12 training clips, dropout 0.1, weight decay 0.005, weight average EMA 0.997"
    assert comparison["training"] == conv["training"] == trained
    assert "Paired difference" in (conv_out / "REPORT.md").read_text()


def test_a_recipe_chosen_on_a_held_out_subject_is_retrained_on_every_training_clip(tmp_path: Path) -> None:
    raw = write_raw_folder(tmp_path / "raw")
    val_work, out = tmp_path / "work-val", tmp_path / "report"
    common = ["--raw", str(raw), "--out", str(out), "--epochs", "2", "--no-progress"]
    with one_thread():
        assert main([*common, "--work", str(val_work), "--val-subjects", "7", "--validate-only"]) == 0
    cached = json.loads((val_work / "evaluation.json").read_text())
    assert "evaluation" not in cached and not out.exists()  # the test subjects stay unseen while choosing
    assert cached["validation"]["test_clips"] == len(cached["validation"]["clips"]) == 4  # 2 actions x 2 trials
    with pytest.raises(SystemExit, match="validation fraction 0 and validation subjects \\[7\\]"):
        main([*common, "--work", str(val_work), "--val-fraction", "0.25"])  # not the split the folder was made with
    work = tmp_path / "work"
    argv = [*common, "--work", str(work), "--validation-runs", str(val_work)]  # default: every training clip trains
    with one_thread():
        assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["split_sizes"] == {"train": 16, "val": 0, "test": 16} and results["validation"] is None
    (choice,) = results["recipe_choice"]
    assert choice["val_subjects"] == [7] and choice["train_clips"] == 12 and choice["epochs"] == 2
    assert choice["depth_size"] == results["train"]["depth_size"] == [60, 80]  # the recipe's, read from the models
    assert choice["person_crop"] == results["train"]["person_crop"] == [32, 16]
    assert choice["causal_encoder"] is results["train"]["causal_encoder"] is False
    assert choice["clip_accuracy"] == cached["validation"]["clip_accuracy"]
    report = (out / "REPORT.md").read_text()
    assert "## Recipe choice on whole-subject validation" in report and "no validation split" in report
    assert "Choice (chosen_run" in report
    chosen = "2 epochs, depth 60x80, person crop 32x16, dropout 0.1, weight decay 0.005, weight average 0.997"
    assert f"{chosen}, as this report's model does" in report
    # a folder scored by an older evaluation (no per-clip rows) is refused, with how to score it again
    (val_work / "evaluation.json").write_text(json.dumps({**cached, "version": 2}))
    with pytest.raises(SystemExit, match="older evaluation .*run it again with --validate-only"):
        main(argv)


def test_the_recipe_choice_takes_the_best_validation_clip_accuracy_then_the_fewer_epochs_then_pixels() -> None:
    def run(epochs: int, clip: float, frame: float, depth: tuple[int, int] = (60, 80)) -> dict[str, object]:
        return {"epochs": epochs, "clip_accuracy": {"value": clip}, "frame_accuracy": {"value": frame},
                "depth_size": list(depth)}  # fmt: skip

    assert chosen_run([run(12, 0.80, 0.6), run(15, 0.82, 0.5)])["epochs"] == 15
    assert chosen_run([run(12, 0.80, 0.6), run(15, 0.80, 0.7)])["epochs"] == 15
    assert chosen_run([run(15, 0.80, 0.6), run(12, 0.80, 0.6)])["epochs"] == 12
    assert chosen_run([run(15, 0.80, 0.6, (90, 120)), run(15, 0.80, 0.6)])["depth_size"] == [60, 80]
    assert chosen_run([run(15, 0.80, 0.6), run(15, 0.81, 0.6, (90, 120))])["depth_size"] == [90, 120]


def test_recipes_held_out_on_several_subjects_are_pooled_and_only_the_most_validated_compete() -> None:
    def run(
        subject: int,
        depth: tuple[int, int],
        hits: int,
        clips: int,
        frames_correct: int,
        causal: bool = False,
        ema: float = 0.0,
        dropout: float = 0.1,
    ) -> dict[str, object]:
        rows = [clip_row(f"s{subject}_c{i}", i < hits, 10, frames_correct) for i in range(clips)]
        return {"work": f"w-{subject}-{depth[0]}", "epochs": 15, "depth_size": list(depth), "person_crop": [32, 16],
                "causal_encoder": causal, "dropout": dropout, "weight_decay": 0.005, "ema_decay": ema,
                "val_subjects": [subject], "val_clips": clips, **clip_scores(rows), "clips": rows,
                "train_s": None}  # fmt: skip

    runs = [run(7, (60, 80), 80, 100, 6), run(5, (60, 80), 25, 50, 4),
            run(7, (90, 120), 70, 100, 5), run(5, (90, 120), 36, 50, 5),
            run(7, (30, 40), 95, 100, 9), run(7, (60, 80), 99, 100, 9, causal=True),
            run(7, (60, 80), 98, 100, 9, ema=0.997), run(7, (60, 80), 97, 100, 9, dropout=0.2)]  # fmt: skip
    pooled = {r["recipe"]: r for r in pooled_by_recipe(runs)}

    def recipe(depth: str, extra: str = "") -> str:
        return f"15 epochs, depth {depth}, person crop 32x16, dropout 0.1, weight decay 0.005{extra}"

    base = pooled[recipe("60x80")]
    fine = pooled[recipe("90x120")]
    assert base["val_subjects"] == [5, 7] and base["val_clips"] == 150
    assert base["clip_accuracy"]["value"] == pytest.approx((80 + 25) / 150)  # pooled over clips
    assert base["frame_accuracy"]["value"] == pytest.approx((100 * 6 + 50 * 4) / 1500)  # pooled over frames
    lo, hi = base["clip_accuracy"]["ci95"]
    assert lo < (80 + 25) / 150 < hi and hi - lo < 0.2  # a bootstrap interval over the 150 clips
    assert fine["clip_accuracy"]["value"] == pytest.approx((70 + 36) / 150)
    # the best single-subject score does not compete with recipes held out on two subjects
    assert not pooled[recipe("30x40")]["competes"] and base["competes"]
    causal = pooled[recipe("60x80", ", causal temporal encoder")]  # a recipe of its own
    assert causal["val_clips"] == 100 and not causal["competes"]
    averaged = pooled[recipe("60x80", ", weight average 0.997")]  # so is a weight average
    assert averaged["val_clips"] == 100 and averaged["ema_decay"] == 0.997 and not averaged["competes"]
    dropped = pooled["15 epochs, depth 60x80, person crop 32x16, dropout 0.2, weight decay 0.005"]  # and a dropout
    assert dropped["val_clips"] == 100 and dropped["dropout"] == 0.2 and not dropped["competes"]
    assert chosen_run([r for r in pooled.values() if r["competes"]])["depth_size"] == [90, 120]
    # the chosen recipe against each other competitor, paired over the same clips: +1 clip of 150, indistinguishable
    paired = base["against_chosen"]
    assert paired["clip_accuracy"]["difference"] == pytest.approx(1 / 150)
    assert paired["clip_accuracy"]["verdict"] == "not distinguishable"
    assert paired["frame_accuracy"]["difference"] == pytest.approx((100 * -1 + 50 * 1) / 1500)
    assert "against_chosen" not in fine and "against_chosen" not in pooled[recipe("30x40")]
    text = "\n".join(render_recipe_choice(runs, list(pooled.values()), {**fine, "person_crop": [32, 16]}))
    assert f"| {recipe('60x80')} | 5, 7 | 150 | 70.0 % (" in text
    assert (
        "| w-7-60 | 7 (100 clips) | 15 | 60x80 | 32x16 | whole window | dropout 0.1, weight decay 0.005 | EMA 0.997 | "
        "98.0 % (" in text
    )
    assert (
        f"Paired difference, {recipe('90x120')} minus {recipe('60x80')} (95 % bootstrap over the same 150 held-out "
        "clips): clip accuracy +0.7 points (" in text
    )
    assert "as this report's model does" in text


def test_the_same_recipe_run_again_is_set_beside_this_run_and_another_recipe_is_refused(tmp_path: Path) -> None:
    raw = write_raw_folder(tmp_path / "raw")
    work, again, out = tmp_path / "work", tmp_path / "work-seed2", tmp_path / "report"
    common = ["--out", str(out), "--epochs", "2", "--no-progress"]
    with one_thread():
        assert main([*common, "--raw", str(raw), "--work", str(work)]) == 0
    (again / "dataset").mkdir(parents=True)
    for item in ("dataset.json", "splits.json", "sequences"):
        (again / "dataset" / item).symlink_to(work / "dataset" / item)
    with one_thread():
        assert main([*common, "--work", str(again), "--set", "run.seed=2"]) == 0
        assert main([*common, "--work", str(work), "--repeats", str(again)]) == 0
    results = json.loads((out / "results.json").read_text())
    first, second = results["repeats"]
    assert (first["work"], first["seed"], second["work"], second["seed"]) == (str(work), 1, str(again), 2)
    assert first["clip_accuracy"] == results["evaluation"]["clip_accuracy"]
    assert second["clip_accuracy"] == json.loads((again / "evaluation.json").read_text())["evaluation"]["clip_accuracy"]
    mean = (first["clip_accuracy"]["value"] + second["clip_accuracy"]["value"]) / 2
    report = (out / "REPORT.md").read_text()
    assert "## The same recipe run again" in report and f"clip accuracy mean {100 * mean:.1f} %" in report
    # the stages this folder ran recorded the machine's load at their end, and the report quotes it
    load = json.loads((work / "load.json").read_text())
    assert set(load) == {"import", "features", "train", "evaluate"} and all(len(v) == 3 for v in load.values())
    assert results["load_average_at_stage_end"] == load and "as recorded in WORK/load.json" in report
    # a folder trained longer is another recipe: refused, with where to put it instead
    summary = json.loads((again / "run" / "summary.json").read_text())
    (again / "run" / "summary.json").write_text(json.dumps({**summary, "epochs": 3}))
    with pytest.raises(SystemExit, match="is not this recipe .*3 epochs.*use --compare-with"):
        main([*common, "--work", str(work), "--repeats", str(again)])
    # so is one whose checkpoint holds the last weights instead of the recipe's weight average
    (again / "run" / "summary.json").write_text(json.dumps(summary))
    config = (again / "run" / "config.yaml").read_text()
    assert "ema_decay: 0.997\n" in config
    (again / "run" / "config.yaml").write_text(config.replace("ema_decay: 0.997\n", "ema_decay: 0.0\n"))
    refused = "is not this recipe .*weight decay 0.005\\), expected .*weight average EMA 0.997"
    with pytest.raises(SystemExit, match=refused):
        main([*common, "--work", str(work), "--repeats", str(again)])
    # and one trained with another weight decay
    (again / "run" / "config.yaml").write_text(config.replace("weight_decay: 0.005\n", "weight_decay: 0.05\n"))
    with pytest.raises(SystemExit, match="is not this recipe .*weight decay 0.05, weight average"):
        main([*common, "--work", str(work), "--repeats", str(again)])
