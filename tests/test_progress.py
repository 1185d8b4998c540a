"""udd_core.progress: the loss-curve figure spec the Train page redraws every second."""
from udd_core.progress import loss_curve


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
