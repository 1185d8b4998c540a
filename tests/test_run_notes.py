"""run_notes: the one-line notes on an unfinished run and on a run that ended while still learning."""
import json

import pytest

from udd_core import runs
from udd_core import run_status
from udd_core.methods import METHOD_FILE
from udd_core.notices import is_caution
from udd_core.run_notes import still_learning_note, unfinished_note


def test_unfinished_note_names_a_run_that_did_not_finish(tmp_path):
    run = runs.new_run(tmp_path, "r")
    assert unfinished_note(run) is None  # no status.json: a model folder of the reference package
    run_status.write_status(run, "finished", "finished 5 epochs")
    assert unfinished_note(run) is None
    run_status.write_status(run, "stopped", "stopped after 2 of 5 epochs")
    assert unfinished_note(run) == "run r is stopped (after 2 of 5 epochs): this is the model saved so far, " \
                                        "not a finished one"
    run_status.write_status(run, "failed", "")
    assert unfinished_note(run).startswith("run r is failed: ")
    (run / runs.LAST_WEIGHTS).write_bytes(b"")  # weights saved inside epoch 1, no epoch in the history
    assert unfinished_note(run) == "run r is failed: no epoch has finished, so its weights are barely trained"
    runs.append_history(run, {"epoch": 1, "train_loss": 0.5})
    assert unfinished_note(run).endswith("this is the model saved so far, not a finished one")


def _finished_with_losses(root, name, losses, train=None):
    run = runs.new_run(root, name)
    run_status.write_status(run, "finished", f"finished {len(losses)} epochs")
    for i, (v, t) in enumerate(zip(losses, train or losses), 1):
        runs.append_history(run, {"epoch": i, "train_loss": t, "val_loss": v})
    return run


def test_still_learning_note_names_a_run_whose_loss_was_still_falling(tmp_path, monkeypatch):
    monkeypatch.setenv("UDD_RUNS_DIR", str(tmp_path))  # a run in the runs folder is resumed by its name
    run = _finished_with_losses(tmp_path, "r", [1.0, 0.5, 0.40, 0.36, 0.33, 0.30])  # -25% over the last 3
    assert still_learning_note(run) == (
        "run r was still learning when its training ended: its validation loss fell 25% over the last 3 epochs, "
        "so more epochs would likely lower it further (Resume on the Train page, or "
        "`udd train --out r --resume --epochs 12`)")
    two = _finished_with_losses(tmp_path, "two", [0.5, 0.4])
    assert "fell 20% over the last epoch," in still_learning_note(two)
    monkeypatch.setenv("UDD_RUNS_DIR", str(tmp_path / "elsewhere"))  # QA sweep 12: `--out r` was not found
    assert still_learning_note(run).endswith(  # the Train page lists the runs folder's runs only (QA sweep 13)
        f"further (Resume with `udd train --out {run.resolve()} --resume --epochs 12`)")
    info = json.loads((run / "train.json").read_text()) if (run / "train.json").exists() else {}
    (run / "train.json").write_text(json.dumps({**info, "data": {"path": str(tmp_path / "gone")}}))
    assert still_learning_note(run).endswith(  # QA sweep 13: the call failed as printed, its data had moved
        f"--epochs 12 --data NEW_PLACE`, NEW_PLACE being where its data {tmp_path / 'gone'} now lies)")
    run_status.write_status(run, "stopped", "stopped after 6 of 9 epochs")  # unfinished_note speaks for it
    assert still_learning_note(run) is None


def test_still_learning_note_names_a_slow_steady_fall_over_a_long_run(tmp_path):
    """QA sweep 15: the README's wafer run fell 15% over its last 20 of 120 epochs but only 3% over the last 3."""
    slow = [1.0 - 0.003 * i for i in range(120)]  # 0.9% over the last 3 epochs
    note = still_learning_note(_finished_with_losses(tmp_path, "slow", slow))
    assert note is not None and "its validation loss fell 12% over the last 30 epochs," in note
    turned = slow[:-1] + [slow[-2] + 0.001]  # the best is epoch 119 of 120: within the last 5%, still learning
    assert "fell 12% over the last 30 epochs" in still_learning_note(_finished_with_losses(tmp_path, "t", turned))
    early = slow[:100] + [slow[99] + 0.01] * 20  # the best 20 epochs back: it has stopped falling
    assert still_learning_note(_finished_with_losses(tmp_path, "e", early)) is None
    flat = [1.0 - 0.001 * i for i in range(40)]  # 1% over the last quarter: a plateau
    assert still_learning_note(_finished_with_losses(tmp_path, "f", flat)) is None


@pytest.mark.parametrize("losses", [
    [1.0, 0.5, 0.40, 0.39, 0.385, 0.384],  # a plateau: 4% over the last 3 epochs
    [1.0, 0.5, 0.40, 0.30, 0.25, 0.26],  # the last epoch is not the best: it has turned
    [0.5],  # one epoch: nothing to compare
    [1.0, 0.5, float("nan")],  # a diverged epoch
    [0.0, 0.0, 0.0],  # a perfect fit
])
def test_still_learning_note_is_quiet_otherwise(tmp_path, losses):
    assert still_learning_note(_finished_with_losses(tmp_path, "r", losses)) is None


def test_still_learning_note_only_for_runs_scored_by_what_their_epochs_train(tmp_path):
    falling = [1.0, 0.5, 0.25]
    assert still_learning_note(_finished_with_losses(tmp_path, "ae", falling)) is not None  # no method.json
    for method in ("feature-ae", "dsvdd", "latent-knn", "memory-bank", "no-such-method"):
        run = _finished_with_losses(tmp_path, method, falling)
        (run / METHOD_FILE).write_text(json.dumps({"method": method}))
        # Deep SVDD and latent-knn score latent codes, not the reconstruction loss shown; the bank has no epochs.
        assert (still_learning_note(run) is not None) == (method == "feature-ae"), method


def test_a_run_trained_on_defects_says_so_and_its_training_data_note_follows(tmp_path):
    """QA: a run trained on pattern classes was told 'the normal images it learned are scored too', and only
    Inspect said that it had learned defects; udd score, the report and Compare take these notes too."""
    from udd_core.run_notes import learned_defects_note, scored_training_data_note

    run = runs.new_run(tmp_path, "gen")
    runs.write_json_atomic(run / runs.TRAIN_FILE, {"settings": {"train_on": "normal"}})
    assert learned_defects_note(run) is None
    assert "the normal images it learned are scored too" in scored_training_data_note(run)
    runs.write_json_atomic(run / runs.TRAIN_FILE, {"settings": {"train_on": "Center,Loc"}})
    assert learned_defects_note(run).startswith("run gen was trained on the classes Center,Loc, not on normal "
                                                "images only: it learned to reconstruct those defects")
    assert scored_training_data_note(run) == ("these are the run's training data: it learned the classes "
                                              "Center,Loc, and those scored here look more normal than unseen "
                                              "ones would")
    runs.write_json_atomic(run / runs.TRAIN_FILE, {"settings": {"train_on": "all"}})
    assert "trained on every image, defects included" in learned_defects_note(run)


def test_udd_score_prints_the_learned_defects_note(tmp_path, capsys):
    from inspect_fixtures import make_mvtec, make_run
    from udd_core.cli import main

    data = make_mvtec(tmp_path / "parts")
    run = make_run(tmp_path / "r", data)
    info = json.loads((run / runs.TRAIN_FILE).read_text())
    info["settings"]["train_on"] = "all"
    (run / runs.TRAIN_FILE).write_text(json.dumps(info))
    assert main(["score", str(run), "--data", str(data), "--json"]) == 0
    notices = json.loads(capsys.readouterr().out)["notices"]
    assert notices[0].startswith("run r was trained on every image, defects included")
    out = json.loads(main(["score", str(run), "--data", str(data / "train" / "good"), "--json"]) == 0
                     and capsys.readouterr().out)
    assert out["settings"]["split"] == "all"  # a plain folder is scored whole, whatever --split said (QA: "test")


def test_damaged_note_names_the_file_that_cannot_load(tmp_path):
    """QA sweep 8: the Train page called such runs finished and sent them to Inspect."""
    import torch

    from udd_core.run_notes import damaged_note
    from udd_core.tensor_files import write_tensors

    run = runs.new_run(tmp_path, "r")
    write_tensors(run / "bank.safetensors", {"bank": torch.zeros(50, 8)})
    (run / METHOD_FILE).write_text(json.dumps({"method": "memory-bank"}))
    assert damaged_note(run) is None
    data = (run / "bank.safetensors").read_bytes()
    (run / "bank.safetensors").write_bytes(data[:-40])
    assert damaged_note(run).startswith(f"{run / 'bank.safetensors'}: not a readable safetensors file")
    (run / "bank.safetensors").write_bytes(data)
    (run / "config.json").write_text(json.dumps({"latent_size": 16}))  # no longer a config
    note = damaged_note(run)
    assert note.startswith(f"{run / 'config.json'}: ") and ": missing field" in note
    (run / "train.json").write_text("{not json")
    assert damaged_note(run).startswith(f"{run / 'train.json'}: not a readable JSON object. ")
    assert "still scores, given the data's path" in damaged_note(run)  # QA sweep 10: `udd score --data` does


def test_damage_advice_fits_the_file_and_a_bad_last_save_blocks_resume_before_the_run_changes(tmp_path, capsys):
    """QA sweep 8: one fixed text for every damage (a resume 'writes its model again' for a memory bank, or
    for a broken config); and a resume from a truncated last.safetensors failed after it had marked a finished,
    scorable run "failed" and rewritten its train.json."""
    from inspect_fixtures import make_mvtec, make_run
    from udd_core.cli import main
    from udd_core.run_notes import damaged_note, resume_blocker

    run = make_run(tmp_path / "r", make_mvtec(tmp_path / "parts"))
    assert damaged_note(run) is None and resume_blocker(run) is None
    model = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(model[:100])
    assert damaged_note(run).endswith("Resume writes it again from last.safetensors")
    (run / "model.safetensors").write_bytes(model)
    last = run / runs.LAST_WEIGHTS
    last.write_bytes(last.read_bytes()[:100])
    assert damaged_note(run) is None  # the model still loads and scores
    assert resume_blocker(run).startswith(f"{last}: not a readable safetensors file")
    before = {f: (run / f).read_bytes() for f in (runs.TRAIN_FILE, runs.STATUS_FILE)}
    assert main(["train", "--out", str(run), "--resume", "--epochs", "3"]) == 2
    assert "cannot resume: " in capsys.readouterr().err
    assert {f: (run / f).read_bytes() for f in before} == before  # nothing changed
    (run / "config.json").write_text("{")
    assert damaged_note(run).endswith("no resume can repair it: train a new run")


def test_next_step_of_a_finished_or_stopped_run(tmp_path):
    """QA sweep 10: a memory bank stopped during its coreset selection scores, but the Train page said nothing."""
    import torch

    from udd_core.run_notes import next_step
    from udd_core.tensor_files import write_tensors

    run = runs.new_run(tmp_path, "r")
    run_status.write_status(run, "stopped", "stopped in epoch 1")
    assert next_step(run) is None  # nothing saved: no page to go to
    write_tensors(run / "bank.safetensors", {"bank": torch.zeros(50, 8)})
    (run / METHOD_FILE).write_text(json.dumps({"method": "memory-bank"}))
    run_status.write_status(run, "stopped", "bank of 50 patches (stopped early)")
    page, text = next_step(run)
    assert page == "Inspect" and "saved before the run stopped scores" in text
    assert text.endswith("a complete memory-bank needs a new run.")
    run_status.write_status(run, "finished", "done")
    assert next_step(run)[1].startswith("Done: open the **Inspect** page")
    run_status.write_status(run, "failed", "boom")
    assert next_step(run) is None


def test_overfit_note_names_a_run_whose_validation_loss_rose_far_after_its_best(tmp_path):
    """QA sweep 13: the wafer-generation preset's best epoch was 52 of 120, its last validation loss 3x the best,
    and nothing said so."""
    from udd_core.run_notes import ending_note, overfit_note

    falling = [1.0, 0.3, 0.2, 0.15, 0.1, 0.08, 0.05]  # the training loss, still falling: overfitting
    run = _finished_with_losses(tmp_path, "r", [1.0, 0.3, 0.2, 0.25, 0.3, 0.35, 0.4], falling)
    assert overfit_note(run) == ending_note(run) == (
        "run r overfit: its validation loss was lowest at epoch 3 (0.2) and rose to 0.4 by epoch 7; its model is "
        "epoch 3's (model.safetensors), which every score and image uses, so the epochs after it cost time only: "
        "about 3 epochs train the same model")
    assert overfit_note(_finished_with_losses(tmp_path, "small", [1.0, 0.3, 0.2, 0.22, 0.25, 0.26, 0.28],
                                              falling)) is None
    # QA sweep 14: a run whose training loss blew up too diverged (its rate too high): no "fewer epochs" advice;
    # QA sweep 17: but not silence either (validation 4.4x its best at epoch 1, the training loss up at the end)
    assert overfit_note(_finished_with_losses(tmp_path, "diverged", [1.0, 0.3, 0.2, 0.25, 0.3, 0.35, 0.4])) == (
        "run diverged diverged: its validation loss was lowest at epoch 3 (0.2) and rose to 0.4 by epoch 7, and its "
        "training loss rose too (0.2 to 0.4), as a learning rate too high makes it; its model is epoch 3's "
        "(model.safetensors), which every score and image uses; a lower learning rate may reach a lower loss")
    assert overfit_note(_finished_with_losses(tmp_path, "late", [1.0, 0.8, 0.6, 0.5, 0.4, 0.2, 0.4], falling)) is None
    learning = _finished_with_losses(tmp_path, "learning", [1.0, 0.5, 0.40, 0.36, 0.33, 0.30])
    assert overfit_note(learning) is None and ending_note(learning) == still_learning_note(learning)


def test_a_jump_of_the_training_loss_that_came_back_down_is_named(tmp_path):
    """QA sweep 19b: a bf16 run's training loss went from 0.027 to 20.3 at epoch 18 and back, and nothing said so
    (the Train page's linear curve went flat)."""
    from udd_core.run_notes import ending_note

    val = [0.05, 0.04, 0.03, 0.029, 0.038, 0.03, 0.028]
    train = [0.06, 0.04, 0.03, 0.027, 20.3, 0.041, 0.029]
    run = _finished_with_losses(tmp_path, "spike", val, train)
    assert ending_note(run) == (
        "run spike's training loss jumped 752x at epoch 5 (0.027 to 20.3) and came back down: an unstable step, as a "
        "learning rate too high makes it; its model is epoch 7's, the best validation loss; the Train page's log "
        "scale shows the rest of the curve")
    bf16 = _finished_with_losses(tmp_path, "bf16", val, train)
    lines = (bf16 / runs.HISTORY_FILE).read_text().splitlines()
    (bf16 / runs.HISTORY_FILE).write_text("".join(json.dumps({**json.loads(x), "precision": "bf16"}) + "\n"
                                                  for x in lines))
    assert ("as a learning rate too high makes it (its steps ran in bf16 then: --precision float32, or the Train "
            "page's bf16 switch off, avoids it)") in ending_note(bf16)
    # a rise of 5x is noise for this note, and a jump that stays is the overfit note's "diverged"
    assert ending_note(_finished_with_losses(tmp_path, "noise", val, [0.06, 0.04, 0.03, 0.027, 0.13, 0.04, 0.03]))\
        is None
    stays = _finished_with_losses(tmp_path, "stays", [0.05, 0.04, 0.03, 0.2, 0.3, 0.4, 0.5],
                                  [0.06, 0.04, 0.03, 2.0, 3.0, 4.0, 5.0])
    assert ending_note(stays).startswith("run stays diverged:")


def test_a_run_whose_loss_no_reconstruction_could_reach_blew_up(tmp_path):
    """QA sweep 20: at lr 0.3 the loss sat at 4.7e30 for 11 epochs, unsaid, and scoring gave image AUROC 1.0."""
    from udd_core.run_notes import ending_note

    run = _finished_with_losses(tmp_path, "hot", [2.2e30, 4.7485e30, 4.7485e30])
    assert ending_note(run) == (
        "run hot blew up: its lowest validation loss is 2.2e+30, more than any reconstruction in the images' [0, 1] "
        "range could score (1), as a learning rate far too high makes it; its maps and scores mean nothing, whatever "
        "its AUROC; train it again with a lower learning rate")
    info = {"settings": {"loss": "ce"}}  # a softmax model's cross-entropy has no such bound
    (run / runs.TRAIN_FILE).write_text(json.dumps(info))
    assert ending_note(run) is None or "blew up" not in ending_note(run)


def test_a_damaged_history_is_said_and_a_killed_writers_cut_line_is_not(tmp_path):
    """QA sweep 21: a history.jsonl damaged after it was written read "finished · 3 epochs" above "No epoch has
    finished", unsaid. A cut last line (a killed writer) and the resume that writes its epoch again are no damage."""
    from udd_core.run_notes import history_note

    for e in (1, 2):
        runs.append_history(tmp_path, {"epoch": e, "train_loss": 0.5})
    with open(tmp_path / runs.HISTORY_FILE, "a") as f:
        f.write('{"epoch": 3, "train_lo')  # killed mid-line
    assert history_note(tmp_path) is None
    runs.append_history(tmp_path, {"epoch": 3, "train_loss": 0.1})  # resumed: epoch 3 again
    runs.append_history(tmp_path, {"epoch": 4, "train_loss": 0.1})
    assert history_note(tmp_path) is None and runs.history_records(tmp_path)[1] == 1
    lines = (tmp_path / runs.HISTORY_FILE).read_text().splitlines()
    lines[1] = '{"epoch": 2, "train_loss": garbage'
    (tmp_path / runs.HISTORY_FILE).write_text("\n".join(lines) + "\n")
    note = history_note(tmp_path)
    assert note == (f"{tmp_path / runs.HISTORY_FILE}: no record of epoch 2 reads (cut by a killed writer, or damaged "
                    "since): the loss curve and the epoch count lack it") and not is_caution(note)
    (tmp_path / runs.HISTORY_FILE).write_bytes(bytes(range(256)) * 2)
    assert "no line reads (damaged)" in history_note(tmp_path) and is_caution(history_note(tmp_path))
