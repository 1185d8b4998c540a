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
    # QA sweep 7: the ticks between decades read "5" and "2" under a "1"; plotly itself must accept the fix
    import plotly.graph_objects as go

    assert go.Figure(spec).layout.yaxis.minorloglabels == "complete"


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


def test_progress_line_prints_every_epoch_of_every_loop_once_even_between_polls():
    import io

    from udd_core.progress import ProgressBoard, ProgressLine

    out, board = io.StringIO(), ProgressBoard("r", epochs=3)
    line = ProgressLine(out)
    board.update(train_loss=[0.9, 0.8], val_loss=[0.85, 0.75], phase_start=2)  # a resumed run's 2 old epochs
    line.show(board.snapshot())
    board.train_loss.append(0.7), board.val_loss.append(0.65)  # epoch 3 ends, and before the next poll ...
    board.next_phase("Deep SVDD", 4, [], [], status="running")  # ... the second loop begins
    board.notices.append("pretraining done")
    for v in (0.5, 0.4):
        board.train_loss.append(v), board.val_loss.append(None)
    line.show(board.snapshot())
    line.show(board.snapshot())  # nothing new: nothing printed twice
    assert out.getvalue().splitlines() == [
        "epoch 3/3  loss 0.7  val 0.65",  # the last epoch of the first loop is not lost at the switch
        "note: pretraining done",
        "Deep SVDD epoch 1/4  loss 0.5",
        "Deep SVDD epoch 2/4  loss 0.4"]
    snap = board.snapshot()
    assert (snap.phase, snap.phase_start, snap.step_loss) == ("Deep SVDD", 0, ())
    assert [(c.name, c.train_loss, c.start, c.epochs) for c in snap.earlier] == [("", (0.9, 0.8, 0.7), 2, 3)]
    board.update(epoch=3, step=1, steps_per_epoch=4, epochs=4)
    assert progress_bar(board.snapshot(), one_pass=False)[1].startswith("Deep SVDD epoch 3/4 · step 1/4")


def test_loop_series_draws_each_epoch_loop_with_the_live_one_from_the_snapshot():
    from udd_core.progress import ProgressBoard, loop_series

    pre = [{"epoch": 1, "train_loss": 0.9, "val_loss": 0.8}, {"epoch": 2, "train_loss": 0.7, "val_loss": 0.6}]
    svdd = [{"epoch": 1, "train_loss": 5.0, "val_loss": 6.0}]
    loops = [("Pretraining", pre), ("Deep SVDD", svdd)]
    board = ProgressBoard("r", epochs=2)
    board.update(train_loss=[0.9, 0.7], val_loss=[0.8, 0.6], step_loss=[1.0, 0.8], steps_per_epoch=1, epoch=2)
    live = loop_series(board.snapshot(), loops, alive=True)  # still pretraining: the later loop is not drawn
    assert [(c, s["train"]) for c, s in live] == [("Pretraining", (0.9, 0.7))] and len(live[0][1]["step"]) == 2
    board.next_phase("Deep SVDD", 3, [5.0], [6.0], step_loss=[5.5], epoch=1)
    live = loop_series(board.snapshot(), loops, alive=True)
    assert [(c, list(s["train"])) for c, s in live] == [("Pretraining", [0.9, 0.7]), ("Deep SVDD", [5.0])]
    assert len(live[0][1]["step"]) == 0 and live[1][1]["step"] == (5.5,)  # the steps go with the live loop
    done = loop_series(board.snapshot(), loops, alive=False)  # from the files, the steps with the last loop
    assert [s["val"] for _, s in done] == [[0.8, 0.6], [6.0]] and done[1][1]["step"] == (5.5,)
    assert loop_series(None, [("Pretraining", pre), ("Deep SVDD", [])], alive=False)[0][0] == "Pretraining"
    assert loop_series(None, [("", pre)], alive=False)[0][0] == ""  # one loop: no caption
    assert loop_series(None, [("", [])], alive=False) == []
    first = ProgressBoard("r", epochs=2)  # stopped during its first epoch, after one step
    first.update(step_loss=[0.9], steps_per_epoch=4, step=1)
    assert loop_series(first.snapshot(), [("", [])], alive=False) == []  # one point: no chart (QA: an empty one)
    first.update(step_loss=[0.9, 0.8], step=2)
    assert len(loop_series(first.snapshot(), [("", [])], alive=False)[0][1]["step"]) == 2


def test_a_log_loss_axis_labels_only_1_2_5_over_one_to_three_decades():
    """QA: over about one decade plotly labels every digit (0.009, 0.008, ...), on top of each other on the
    Train page's small chart; there the labels are 1, 2 and 5 (dtick D2), checked by plotly itself."""
    import plotly.graph_objects as go

    from udd_core.progress import loss_axis

    def dtick(*ys):
        spec = loss_curve(list(range(1, len(ys) + 1)), list(ys), [None] * len(ys), log=True)
        return go.Figure(spec).layout.yaxis.dtick

    assert dtick(0.04, 0.01, 0.002) == "D2"  # 1.3 decades
    assert dtick(0.3, 0.0005) == "D2"
    assert dtick(0.031, 0.012) is None  # under a decade: plotly's own 0.012 ... 0.03 labels are the readable ones
    assert dtick(1.0, 1e-5) is None  # five decades: plotly labels the decades only
    assert dtick(0.5) is None and "dtick" not in loss_axis(False, [{"y": [0.04, 0.002]}])
    assert "dtick" not in loss_axis(True, [{"y": [None, float("nan"), 0.0, 0.5]}])  # nothing to span


def test_a_single_loss_value_is_drawn_on_an_axis_from_zero():
    """QA sweep 8: after one epoch the linear axis ran from -0.5 to 1 around a loss of 0.127."""
    spec = loss_curve([1], [0.127], [None])
    assert spec["layout"]["yaxis"]["range"] == [0, 0.254]
    assert "range" not in loss_curve([1, 2], [0.127, 0.1], [None, None])["layout"]["yaxis"]  # plotly's own
