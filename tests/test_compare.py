"""udd_core.compare: diffs, aligned shape tables, loss figures and notes, and the data runs compare on."""
import json

from inspect_fixtures import tiny_config
from udd_core import compare as cmp


def side(name="a", config=None, shape=(1, 32, 32), info=None, history=(), method="autoencoder", spec=None):
    from pathlib import Path

    return cmp.RunSide(name, Path(name), method, config, shape, info or {}, list(history), spec or {"method": method})


def test_flatten_and_diff_rows():
    assert cmp.flatten({"a": 1, "b": {"c": [1, 2], "d": {"e": None}}, "f": {}}) == \
        {"a": 1, "b.c": [1, 2], "b.d.e": None, "f": {}}
    rows = cmp.diff_rows([{"x": 1, "y": [1, 2], "z": "s"}, {"x": 1, "y": [1, 3], "w": None}])
    assert [r.field for r in rows] == ["x", "y", "z", "w"]
    by = {r.field: r for r in rows}
    assert not by["x"].changed and by["y"].changed and by["y"].values == ("[1, 2]", "[1, 3]")
    assert by["z"].values == ("s", cmp.MISSING) and by["z"].changed  # present in one run only
    assert by["w"].values == (cmp.MISSING, "none")  # unset, e.g. lr_step off
    assert all(isinstance(v, str) for r in rows for v in r.values)  # one type per table column


def test_differ_line_counts_the_fields_and_names_what_it_leaves_to_the_table():
    assert cmp.differ_line([]) == "No field differs."
    assert cmp.differ_line(["lr"], " among x") == "1 field differs among x: lr."
    assert cmp.differ_line([], noun="row") == "No row differs."  # the shape table: stages and totals
    assert cmp.differ_line(["enc1", "params"], noun="row") == "2 rows differ: enc1, params."
    fields = [f"f{i}" for i in range(11)]
    assert cmp.differ_line(fields) == "11 fields differ: f0, f1, f2, f3, f4, f5, f6, f7, and 3 more in the table."
    assert cmp.differ_line(fields[:8]).endswith("f7.")  # all shown: no "more"


def test_a_run_without_a_config_changes_no_field():
    cfg = tiny_config()
    rows = cmp.config_diff([side("a", cfg), side("b", None), side("c", {**cfg, "latent_size": 8})])
    assert [r.field for r in rows if r.changed] == ["latent_size"]
    assert {r.values[1] for r in rows} == {cmp.NO_CONFIG}
    assert not any(r.changed for r in cmp.config_diff([side("a", cfg), side("b", None)]))


def test_shape_rows_align_stages_and_mark_the_differing_ones():
    cfg = tiny_config()
    rows = {r.field: r for r in cmp.shape_rows([side("a", cfg), side("b", {**cfg, "latent_size": 8}),
                                                 side("c", None)])}
    assert rows["latent"].values == ("4x4x4", "8x4x4", cmp.NO_CONFIG) and rows["latent"].changed
    assert rows["enc1"].values[:2] == ("4x16x16", "4x16x16") and not rows["enc1"].changed
    assert rows["params"].changed and not rows["receptive_field"].changed
    # A different input size changes every stage; a decoder that does not mirror says so.
    rows = {r.field: r for r in cmp.shape_rows([side("a", cfg), side("b", cfg, (1, 64, 64))])}
    assert rows["input"].changed and rows["enc1"].values == ("4x16x16", "4x32x32")
    bad = {**cfg, "out_pad": [0, 0]}
    rows = {r.field: r for r in cmp.shape_rows([side("a", cfg), side("b", bad)])}
    assert any("(mismatch)" in r.values[1] for r in rows.values())


def test_shape_rows_of_a_feature_autoencoder_start_from_its_features():
    from udd_core.presets import model_presets

    feat = model_presets()["feature-ae"].config.to_dict()
    rows = {r.field: r for r in cmp.shape_rows([side("f", feat, (1, 256, 256), method="feature-ae")])}
    assert rows["input"].values == ("512x8x8",) and rows["latent"].values == ("32x2x2",)
    assert "error" not in rows


def test_settings_diff_leaves_out_creation_times_and_adds_the_method():
    a = side("a", info={"settings": {"epochs": 5, "lr": 0.001}, "created": "2026-01-01", "resumed": []})
    b = side("b", info={"settings": {"epochs": 9, "lr": 0.001}, "created": "2026-02-02", "resumed": [{"at": 1}]},
             method="dsvdd")
    rows = {r.field: r for r in cmp.settings_diff([a, b])}
    scoring = {f"method options.{k}" for k in cmp.SCORING_KEYS}  # each run's own defaults
    assert set(rows) == {"method", "settings.epochs", "settings.lr"} | scoring
    assert rows["method"].values == ("autoencoder", "dsvdd") and rows["method"].changed
    assert rows["settings.epochs"].changed and not rows["settings.lr"].changed


def test_settings_diff_shows_two_autoencoders_what_they_score_with():
    """QA sweep 15: two plain autoencoder runs record no scoring options, and Compare showed no scoring row."""
    a, b = side("a", info={"settings": {"loss": "mse"}}), side("b", info={"settings": {"loss": "mse"}})
    rows = {r.field: r for r in cmp.settings_diff([a, b])}
    assert rows["method options.residual"].values == ("l2 (default)", "l2 (default)")
    assert rows["method options.score"].values == ("mean (default)",) * 2 and not rows["method options.score"].changed
    odd = side("odd", method="unknown", spec={"method": "unknown"}, info={"settings": {"loss": "mse"}})
    rows = {r.field: r for r in cmp.settings_diff([a, odd])}  # no method known: no defaults to name, no error
    assert rows["method options.residual"].values == ("l2 (default)", cmp.MISSING)


def test_settings_diff_shows_a_one_pass_method_its_options_not_the_training_loop():
    ae = side("ae", info={"settings": {"epochs": 5, "lr": 0.001, "seed": 0}, "options": {}})
    bank_spec = {"method": "memory-bank", "input_shape": [1, 32, 32], "coreset": 0.1, "k": 1, "fit": {"bank": 9}}
    # an older memory-bank run recorded the autoencoder's training settings too: they are not shown
    bank = side("bank", method="memory-bank", spec=bank_spec,
                info={"settings": {"epochs": 50, "lr": 0.01, "seed": 0}, "options": {"coreset": 0.1}})
    rows = {r.field: r for r in cmp.settings_diff([ae, bank])}
    assert rows["settings.epochs"].values == ("5", cmp.ONE_PASS) and not rows["settings.epochs"].changed
    assert rows["settings.lr"].values == ("0.001", cmp.ONE_PASS) and not rows["settings.lr"].changed
    assert rows["settings.seed"].values == ("0", "0") and not rows["settings.seed"].changed
    assert rows["method options.coreset"].values == (cmp.MISSING, "0.1") and rows["method options.coreset"].changed
    assert not any(f.startswith(("options", "method options.fit", "method options.input_shape")) for f in rows)
    b2 = side("b2", method="memory-bank", spec={**bank_spec, "k": 3}, info={"settings": {"seed": 0}})
    rows = {r.field: r for r in cmp.settings_diff([bank, b2])}
    assert rows["method options.k"].values == ("1", "3") and rows["method options.k"].changed
    assert not rows["method options.coreset"].changed and "settings.epochs" not in rows


def test_settings_diff_leaves_out_the_score_statistics_a_fit_measured():
    spec = {"method": "dsvdd", "svdd_epochs": 100, "score_stats": {"mean": 1.5, "std": 0.2}}
    a = side("a", method="dsvdd", spec=spec, info={"settings": {"seed": 0}})
    b = side("b", method="dsvdd", spec={**spec, "score_stats": {"mean": 2.5, "std": 0.3}}, info={"settings": {"seed": 0}})
    rows = {r.field: r for r in cmp.settings_diff([a, b])}
    assert not any("score_stats" in f for f in rows) and not any(r.changed for r in rows.values())


def test_loss_figure_has_one_colour_per_run():
    hist = [{"epoch": 1, "train_loss": 0.5, "val_loss": 0.6}, {"epoch": 2, "train_loss": 0.4, "val_loss": None}]
    fig = cmp.loss_figure([side("a", history=hist), side("b", history=[{"epoch": 1, "train_loss": 0.3}])], log=True)
    names = [t["name"] for t in fig["data"]]
    assert names == ["a · train", "a · validation", "b · train"]  # b has no validation loss
    assert fig["data"][0]["line"]["color"] == fig["data"][1]["line"]["color"] != fig["data"][2]["line"]["color"]
    assert fig["data"][0]["x"] == [1, 2] and fig["layout"]["yaxis"]["type"] == "log"
    assert fig["layout"]["yaxis"]["minorloglabels"] == "complete"  # 0.5 and 0.2 between decades, not 5 and 2
    json.dumps(fig)  # a plain, serialisable spec


def test_curve_notes_say_when_heights_do_not_compare():
    """QA: a cross-entropy curve beside MSE curves on one axis looked 4x worse, with no word."""
    hist = lambda v: [{"epoch": 1, "train_loss": v}]  # noqa: E731 - a curve of each run's own
    data = {"path": "/d/wafers.npz"}
    mse = side("mse-run", info={"settings": {"loss": "mse"}, "data": data}, history=hist(0.5))
    old = side("old-run", info={"data": data}, history=hist(0.4))  # no loss recorded: the default, mse
    ce = side("ce-run", info={"settings": {"loss": "ce"}, "data": data}, history=hist(0.3))
    feat = side("feat-run", info={"settings": {"loss": "mse"}, "data": data}, history=hist(0.2), method="feature-ae")
    bank = side("bank", method="memory-bank")
    assert cmp.curve_notes([mse, old]) == []
    notes = cmp.curve_notes([mse, ce, old, feat, bank])
    assert notes[0] == ("these curves measure different losses (mse on pixels: mse-run, old-run; ce on pixels: "
                        "ce-run; mse on features: feat-run): compare their shapes, not their heights")
    assert notes[1] == "no curve for bank: fitted in one pass, with no training epochs" and len(notes) == 2
    elsewhere = side("elsewhere", info={"settings": {"loss": "mse"}, "data": {"path": "/d/other.npz"}}, history=hist(0.1))
    assert cmp.curve_notes([mse, elsewhere]) == [
        "these runs trained on different data: the same loss can sit at another level on other images"]
    copy = lambda name, path, digest, v: side(name, info={"data": {"path": path, "digest": digest}},  # noqa: E731
                                              history=hist(v))
    assert cmp.curve_notes([copy("a", "/d/x", "ab12", 0.1), copy("b", "/e/x-copy", "ab12", 0.2)]) == []  # QA 21
    assert cmp.curve_notes([copy("a", "/d/x", "ab12", 0.1), copy("b", "/d/x", "cd34", 0.2)]) == [
        "these runs trained on different data: the same loss can sit at another level on other images"]
    assert cmp.curve_notes([bank, side("bank2", method="memory-bank")]) == []  # no curve at all: the page says so


def test_read_side_of_a_damaged_folder(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text("[1, 2]")  # not a dict
    (tmp_path / "r" / "method.json").write_text("{}")  # names no method
    s = cmp.read_side(tmp_path / "r")
    assert s.config is None and s.method == "unknown" and s.info == {} and s.history == [] and s.input_shape is None


def test_same_data_first_puts_runs_of_the_focus_runs_data_first(tmp_path):
    def run(name, data):
        d = tmp_path / name
        d.mkdir()
        (d / "train.json").write_text(json.dumps({"data": {"path": str(tmp_path / data)}} if data else {}))
        return d

    focus, wafer, photos, bare = run("focus", "photos"), run("wafer", "w.npz"), run("same", "photos"), run("bare", None)
    assert [p.name for p in cmp.same_data_first(focus, [wafer, bare, photos])] == ["same", "wafer", "bare"]
    assert [p.name for p in cmp.same_data_first(bare, [wafer, photos])] == ["wafer", "same"]  # no data: as given


def test_log_scale_is_wanted_when_the_losses_lie_ten_times_apart():
    """QA: a feature AE's loss (~0.8) beside pixel AEs' (~0.006) left the pixel curves flat on zero."""
    feat = side("feat", history=[{"epoch": 1, "train_loss": 0.9, "val_loss": 0.8}])
    pix = side("pix", history=[{"epoch": 1, "train_loss": 0.01, "val_loss": 0.006}])
    near = side("near", history=[{"epoch": 1, "train_loss": 0.5, "val_loss": 0.4}])
    assert cmp.wants_log_scale([feat, pix]) and not cmp.wants_log_scale([feat, near])
    assert not cmp.wants_log_scale([feat, side("bank")])  # one run with a curve: nothing to compare


def test_identical_curves_are_said_and_told_apart_by_their_markers():
    """QA sweep 7: two runs with the same losses (the same seed and settings) drew one line, the later run's
    hiding the earlier's, with no word."""
    hist = [{"epoch": 1, "train_loss": 0.5, "val_loss": 0.6}, {"epoch": 2, "train_loss": 0.4, "val_loss": 0.5}]
    a, b, c = side("a", history=hist), side("b", history=hist), side("c", history=hist[:1])
    assert cmp.curve_notes([a, c, b]) == [
        "the loss curves of a and b are identical and drawn on top of each other (the marker shapes tell them apart)"]
    assert cmp.curve_notes([a, c]) == []
    fig = cmp.loss_figure([a, c, b])
    symbols = {t["name"].split(" · ")[0]: t["marker"]["symbol"] for t in fig["data"]}
    assert len(set(symbols.values())) == 3 and symbols["b"].endswith("-open")  # b's hollow markers show a's
    import plotly.graph_objects as go

    go.Figure(fig)  # plotly accepts the symbols


def test_settings_diff_names_the_residual_an_autoencoder_scores_with_by_default():
    """QA sweep 11: '—' beside an SSIM-trained run's 'ssim' read as unknown; an l2 autoencoder says its default."""
    plain = side("plain", info={"settings": {"loss": "mse"}}, spec={"method": "autoencoder"})
    ssim = side("ssim", info={"settings": {"loss": "ssim"}}, spec={"method": "autoencoder", "residual": "ssim"})
    bank = side("bank", method="memory-bank", spec={"method": "memory-bank", "residual": "knn"}, info={})
    rows = {r.field: r for r in cmp.settings_diff([plain, ssim, bank])}
    assert rows["method options.residual"].values == ("l2 (default)", "ssim (default)", "knn")  # the loss's
    assert rows["method options.residual"].changed
    # QA sweep 12: the other scoring keys read "—" as if unknown; each says the method's default
    ssim.spec.update(score="topk", topk_percent=1.0)
    rows = {r.field: r for r in cmp.settings_diff([plain, ssim])}
    assert rows["method options.score"].values == ("mean (default)", "topk (default)")
    assert rows["method options.score"].changed
    assert rows["method options.topk_percent"].values == ("1.0 (default)", "1.0 (default)")
    assert not rows["method options.topk_percent"].changed  # the same value, one of them by default
