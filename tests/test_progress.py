"""udd_core.progress: the loss-curve figure spec the Train page redraws every second."""
from udd_core.progress import ProgressBoard, loss_curve, progress_bar


def test_loss_curve_epochs_validation_and_steps():
    spec = loss_curve([1, 2], [0.5, 0.3], [0.6, None], step=[0.9, 0.7, 0.6, 0.4], steps_per_epoch=2, now=2.0)
    names = [t["name"] for t in spec["data"]]
    assert names == ["train, per step (smoothed)", "train", "validation"]
    steps = spec["data"][0]
    assert steps["x"] == [0.5, 1.0, 1.5, 2.0] and steps["y"] == [0.9, 0.7, 0.6, 0.4]  # newest step at `now`
    assert spec["data"][1]["x"] == [1, 2] and spec["data"][2]["y"] == [0.6, None]
    assert spec["layout"]["yaxis"]["type"] == "linear"


def test_loss_curve_log_scale_no_validation_and_thinned_steps():
    spec = loss_curve([1], [0.5], [None], step=list(range(1, 9001)), steps_per_epoch=9000, now=1.0, log=True)
    assert [t["name"] for t in spec["data"]] == ["train, per step (smoothed)", "train"]
    assert len(spec["data"][0]["x"]) == 3000 and spec["data"][0]["x"][-1] == 1.0  # thinned, newest kept
    assert spec["layout"]["yaxis"]["type"] == "log"


def test_epochs_elapsed_through_an_epoch_and_its_validation():
    board = ProgressBoard(run_dir="r", epochs=3, steps_per_epoch=4)
    seen = [board.snapshot().epochs_elapsed]  # not started
    for step in range(1, 5):
        board.update(status="running", epoch=1, step=step)
        seen.append(board.snapshot().epochs_elapsed)
    # the last step is done while the epoch validates: its loss is not recorded yet
    board.update(train_loss=[0.5], val_loss=[0.6])  # epoch 1 recorded
    seen.append(board.snapshot().epochs_elapsed)
    board.update(epoch=2, step=1)
    seen.append(board.snapshot().epochs_elapsed)
    board.update(status="finished", epoch=1)  # stopped after epoch 1: epochs done
    seen.append(board.snapshot().epochs_elapsed)
    assert seen == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.25, 1.0]


def test_progress_bar_for_epochs_and_for_a_one_pass_fit():
    b = ProgressBoard("run", epochs=4)
    b.update(status="running", epoch=2, step=0, steps_per_epoch=10)
    assert progress_bar(b.snapshot(), one_pass=False) == (0.25, "Starting: epoch 3/4, first batch…")
    b.update(step=5, eta_s=75.0, images_per_s=12.34, lr=1e-3)
    done, text = progress_bar(b.snapshot(), one_pass=False)
    assert done == (1 + 0.5) / 4 and text == "Epoch 2/4 · step 5/10 · ETA 01:15 · 12.3 images/s · lr 0.001"
    b.update(epoch=2, epochs=2, step=30, steps_per_epoch=40, message="selecting the coreset 30/40", eta_s=None)
    # the phase's message counts its work: no bare "30/40" beside it, and no ETA before one is known
    assert progress_bar(b.snapshot(), one_pass=True) == (0.75, "Phase 2/2: selecting the coreset 30/40")
    b.update(eta_s=12.0)
    assert progress_bar(b.snapshot(), one_pass=True)[1] == "Phase 2/2: selecting the coreset 30/40 · ETA 00:12"
    b.update(step=50)  # a phase that overruns its announced steps never draws past the end
    assert progress_bar(b.snapshot(), one_pass=True)[0] == 1.0



def test_loss_curve_ticks_whole_epochs():
    from udd_core.progress import loss_curve

    short = loss_curve([1, 2], [0.5, 0.4], [None, None], now=2.0)["layout"]["xaxis"]
    assert short["dtick"] == 1 and short["tick0"] == 0  # 1, 2, never 0.5, 1.5
    assert loss_curve(list(range(1, 201)), [0.1] * 200, [None] * 200)["layout"]["xaxis"]["dtick"] == 20


def test_curve_series_takes_the_snapshot_while_alive_else_the_history():
    from types import SimpleNamespace

    from udd_core.progress import curve_series

    snap = SimpleNamespace(train_loss=(0.5, 0.4), val_loss=(0.6, None), step_loss=(0.7, 0.5, 0.45),
                           steps_per_epoch=3, epochs_elapsed=2.0)
    live = curve_series(snap, None, alive=True)
    assert live["epochs"] == [1, 2] and live["train"] == (0.5, 0.4) and live["steps_per_epoch"] == 3
    assert live["now"] == 2.0 and len(live["step"]) == 3
    hist = [{"epoch": 1, "train_loss": 0.5, "val_loss": 0.6}]
    old = curve_series(snap, hist, alive=False)  # the snapshot covers 2 epochs, the history 1: no step curve
    assert old["epochs"] == [1] and old["val"] == [0.6] and old["step"] == () and old["steps_per_epoch"] == 0
    assert curve_series(None, hist, alive=False)["train"] == [0.5]
