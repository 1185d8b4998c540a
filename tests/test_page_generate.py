"""The Generate page, driven headless with AppTest on a tiny wafer run under a temporary UDD_RUNS_DIR."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Column
from test_generation import fitted, make_run  # noqa: F401 - fitted is a fixture

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "generate.py")
TIMEOUT = 60


def images(app) -> list[list[tuple[str, str]]]:
    """(url, caption) of every image of each line of columns, in page order; the url is a hash of the PNG bytes.
    The page draws each row of pictures as a line of columns, one image in each (a list of images wrapped)."""
    lines: list[list[tuple[str, str]]] = []

    def walk(node) -> None:
        kids = list(getattr(node, "children", {}).values())
        shown = [[(i.url, i.caption) for el in k.get("image") for i in el.proto.imgs] for k in kids
                 if isinstance(k, Column)]
        if kids and len(shown) == len(kids) and all(len(one) == 1 for one in shown):
            lines.append([one[0] for one in shown])
            return
        for kid in kids:
            walk(kid)

    walk(app._tree)
    return lines


STRIP_CAPTION = re.compile(r"from|to|\d\.\d\d")  # the interpolation strip's: its ends and blend weights


def strip(app) -> list[tuple[str, str]]:
    """The interpolation strip: one line, however many steps, captioned by `STRIP_CAPTION`."""
    return next((line for line in images(app) if all(STRIP_CAPTION.fullmatch(c) for _, c in line)), [])


def grid(app) -> list[list[tuple[str, str]]]:
    """The generation grid: every line of images but the interpolation strip."""
    return [line for line in images(app) if not all(STRIP_CAPTION.fullmatch(c) for _, c in line)]


def errors(app) -> str:
    return " | ".join(e.value for e in app.error)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch, fitted):
    root = tmp_path / "runs"
    make_run(root, "tiny", *fitted)
    monkeypatch.setenv("UDD_RUNS_DIR", str(root))
    return root


@pytest.fixture
def at(runs_dir):
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not app.exception, app.exception
    assert not app.error, errors(app)
    return app


def test_no_runs_points_to_the_train_page(tmp_path, monkeypatch):
    monkeypatch.setenv("UDD_RUNS_DIR", str(tmp_path / "empty"))
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not app.exception and not app.error
    assert "Train" in app.info[0].value and not app.get("image")


def test_grid_shows_sources_reconstructions_and_variants(at):
    assert not [s for s in at.selectbox if s.key == "gen_split"]  # a wafer file has no splits to pick
    rows = grid(at)
    assert len(rows) == 4  # 4 source images by default
    for row in rows:
        assert len(row) == 2 + 4  # source, reconstruction, 4 variants
        sigma = at.slider(key="gen_sigma_tiny").value  # the suggestion for this model's latent spread
        assert row[1][1] == "reconstruction" and all(c.startswith(f"σ {sigma:g} ") for _, c in row[2:])
    assert at.get("download_button")
    row = strip(at)
    assert len(row) == 7 + 2 and row[0][1] == "from" and row[-1][1] == "to"
    at.slider(key="gen_steps").set_value(12).run()
    assert len(strip(at)) == 14 and not at.exception


def test_changing_sigma_and_seed_regenerates(at):
    before = grid(at)
    slider = at.slider(key="gen_sigma_tiny")
    suggested = slider.value
    assert 0 < suggested < slider.max
    slider.set_value(slider.max).run()
    assert not at.exception and not at.error, errors(at)
    after_sigma = grid(at)
    assert [r[0] for r in after_sigma] == [r[0] for r in before]  # same sources
    assert [r[2:] for r in after_sigma] != [r[2:] for r in before]  # new variants
    at.number_input(key="gen_seed").set_value(7).run()
    assert not at.exception and not at.error, errors(at)
    assert grid(at) != after_sigma
    at.number_input(key="gen_seed").set_value(0).run()
    at.slider(key="gen_sigma_tiny").set_value(suggested).run()
    assert grid(at) == before  # deterministic: back to the same settings, back to the same images


def test_class_filter_picks_sources_of_that_class(at, tmp_path):
    at.selectbox(key=next(b.key for b in at.selectbox if b.label == "Class")).set_value("Scratch").run()
    assert not at.exception and not at.error, errors(at)
    rows = grid(at)
    assert rows and all(r[0][1].startswith("Scratch ·") for r in rows)
    assert len(rows) == 3  # the class holds 3 maps: the source count follows it down
    at.selectbox(key=next(b.key for b in at.selectbox if b.label == "Class")).set_value(None).run()
    assert len(grid(at)) == 4  # ... and back up to the count last asked for (QA sweep 9 left it at 3)
    at.number_input(key="gen_sources").set_value(6).run()
    at.selectbox(key=next(b.key for b in at.selectbox if b.label == "Class")).set_value("Scratch").run()
    at.selectbox(key=next(b.key for b in at.selectbox if b.label == "Class")).set_value(None).run()
    assert len(grid(at)) == 6 and at.number_input(key="gen_sources").value == 6
    at.selectbox(key=next(b.key for b in at.selectbox if b.label == "Class")).set_value("Scratch").run()
    classes = next(b for b in at.selectbox if b.label == "Class")
    at.text_input(key="gen_data_tiny").input(at.text_input(key="gen_data_tiny").value + " ").run()
    other = next(b for b in at.selectbox if b.label == "Class")  # the same data typed again: the same box
    assert other.key == classes.key and other.value == "Scratch"
    np.savez(tmp_path / "other.npz", maps=np.ones((4, 26, 26), np.uint8), labels=np.array(["Donut", "none"] * 2))
    at.text_input(key="gen_data_tiny").input(str(tmp_path / "other.npz")).run()
    fresh = next(b for b in at.selectbox if b.label == "Class")  # other data: a fresh box, not a stale choice
    assert not at.exception and fresh.value is None and fresh.options == ["all classes (4)", "Donut (2)", "none (2)"]


def test_random_mode_shaded_and_interpolation(at):
    at.radio(key="gen_mode").set_value("Random latents").run()
    assert not at.exception and not at.error, errors(at)
    assert at.radio(key="gen_stats").value == "per position"  # a wafer run: per channel drew blank squares
    at.radio(key="gen_stats").set_value("per channel").run()
    assert [len(line) for line in grid(at)] == [8, 8]  # 16 at most 10 to a line (QA sweep 12: one wrapped alone)
    at.number_input(key="gen_n_random").set_value(5).run()
    plain = grid(at)
    assert len(plain[0]) == 5
    at.toggle(key="gen_shaded").set_value(True).run()
    assert not at.exception and not at.error, errors(at)
    assert grid(at) != plain
    shaded = grid(at)
    at.radio(key="gen_stats").set_value("per position").run()
    assert not at.exception and not at.error, errors(at)
    assert len(grid(at)[0]) == 5 and grid(at) != shaded
    assert any("shared layout is kept" in c.value and "over the normal images" in c.value for c in at.caption)
    at.slider(key="gen_steps").set_value(4).run()
    assert not at.exception and len(strip(at)) == 4 + 2


def test_an_unfinished_run_is_flagged(at, runs_dir):
    assert not [w for w in at.warning if "has a failing die" not in w.value]  # the fixture's run is finished
    (runs_dir / "tiny" / "status.json").write_text(json.dumps({"status": "stopped",
                                                                "message": "stopped after 1 of 3 epochs"}))
    at.run()  # the line udd score prints first, as a sentence
    assert not at.exception and at.warning[0].value.startswith("Run tiny is stopped (after 1 of 3 epochs): ")


def test_bad_data_path_is_a_one_line_error(at):
    at.text_input(key="gen_data_tiny").input("/no/such/data.npz").run()
    assert not at.exception
    assert len(at.error) == 1 and "no such file" in at.error[0].value and "\n" not in at.error[0].value


def test_a_run_whose_data_moved_says_so_and_takes_the_new_place(runs_dir, fitted, tmp_path):
    """QA sweep 12: only "/x: no such file or folder" was said, where `udd generate` says what happened."""
    make_run(runs_dir, "moved", tmp_path / "gone.npz", fitted[1])
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    app.session_state["udd_run"] = "moved"
    app.run()
    assert not app.exception and [e.value for e in app.error] == [
        f"{tmp_path / 'gone.npz'}: the run's training data is gone (moved or deleted); type its new place in Data "
        "above"]
    app.text_input(key="gen_data_moved").input(str(fitted[0])).run()
    assert not app.exception and not app.error and grid(app)


def test_follows_the_run_in_focus_and_keeps_it_in_the_url(runs_dir, fitted):
    make_run(runs_dir, "other", *fitted)
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    app.session_state["udd_run"] = "other"  # picked on another page
    app.run()
    assert not app.exception and app.selectbox(key="gen_run").value == "other"
    assert app.query_params["run"] == "other"
    app.selectbox(key="gen_run").select("tiny").run()
    assert app.session_state["udd_run"] == "tiny" and app.query_params["run"] == "tiny"
    assert app.selectbox(key="gen_run").value == "tiny"


def test_unknown_run_in_the_url_is_a_warning(runs_dir):
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    app.query_params["run"] = "nope"
    app.run()
    assert not app.exception and "'nope'" in app.warning[0].value
    assert app.selectbox(key="gen_run").value == "tiny" and app.query_params["run"] == "tiny"


def test_images_for_a_wafer_run_get_a_warning(at, tmp_path):
    from PIL import Image

    (tmp_path / "photos").mkdir()
    for i in range(2):
        Image.fromarray(np.full((26, 26, 3), 100 + i, np.uint8)).save(tmp_path / "photos" / f"{i}.png")
    at.text_input(key="gen_data_tiny").input(str(tmp_path / "photos")).run()
    assert not at.exception and "trained on wafer maps but these data are images" in at.warning[0].value
    assert at.warning[0].value.endswith("its reconstructions and generated images mean little here.")  # no scores
    at.text_input(key="gen_data_tiny").input("").run()
    assert not at.exception and errors(at).startswith("Data: enter the path of a data set (the run was trained on ")


def test_a_run_without_a_decoder_is_not_offered_and_says_why(runs_dir, monkeypatch, tmp_path):
    from inspect_fixtures import make_mvtec
    from test_detector_consumers import fit_toy
    from toy_detector import register

    register(monkeypatch)
    fit_toy(runs_dir / "toy", make_mvtec(tmp_path / "parts"))
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    app.session_state["udd_run"] = "toy"  # the run in focus on another page
    app.run()
    assert not app.exception and not app.error
    assert "toy is a toy-mean run: it does not generate images" in " ".join(i.value for i in app.info)
    assert [o.split(" ")[0] for o in app.selectbox(key="gen_run").options] == ["tiny"]
    # The run in focus stays toy, for the page the user came from (it used to move to tiny, in the URL too).
    assert app.session_state["udd_run"] == "toy" and app.query_params.get("run") != "tiny"


def test_only_runs_without_a_decoder_get_one_line_that_names_them(monkeypatch, tmp_path):
    from inspect_fixtures import make_mvtec
    from test_detector_consumers import fit_toy
    from toy_detector import register

    register(monkeypatch)
    root = tmp_path / "only-toy"
    monkeypatch.setenv("UDD_RUNS_DIR", str(root))
    fit_toy(root / "toy", make_mvtec(tmp_path / "parts"))
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    app.session_state["udd_run"] = "toy"  # in focus: still one line, not two
    app.run()
    assert not app.exception and not app.error
    assert len(app.info) == 1 and "(toy: toy-mean) do not generate images" in app.info[0].value


def test_every_mode_prints_the_headless_call_that_writes_its_images(at, runs_dir, tmp_path, monkeypatch, capsys):
    """QA: only noised latents printed a `udd generate` line; it left out --npz and echoed a relative data path."""
    import re
    import shlex

    from PIL import Image

    from udd_core import generation as gen
    from udd_core import generation_views as views
    from udd_core.cli import main

    def command() -> str:
        return next(re.search(r"`(udd generate [^`]+)`", c.value).group(1) for c in at.caption
                    if "udd generate" in c.value)

    noised = command()
    assert noised.endswith("--out OUT --npz OUT.npz")  # a wafer run: the page offers the .npz too
    at.radio(key="gen_mode").set_value("Random latents").run()
    at.number_input(key="gen_n_random").set_value(3).run()
    at.radio(key="gen_stats").set_value("per position").run()
    cmd = command()
    assert "--random --per-position" in cmd and " -n 3 " in cmd and "--npz" not in cmd
    out = tmp_path / "cli"
    assert main(shlex.split(cmd.replace("OUT", str(out)))[1:]) == 0
    capsys.readouterr()
    written = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(out.glob("*.png"))]
    run = runs_dir / "tiny"
    model = gen.load_generator(run)
    ds = gen.load_images(model, gen.runs.run_source(run)["path"])
    stats = gen.training_stats(model, gen.images_trained_on(ds), per_position=True)
    shown = views.random_view(model, stats, 3, 0, "wafer", True, "normal").outputs
    assert len(written) == 3 and all(np.array_equal(a, b) for a, b in zip(written, shown))

    monkeypatch.chdir(tmp_path)  # a data path typed relative: the line names it absolute, to run from anywhere
    assert f"--data {tmp_path / 'x.npz'} " in gen.command_line(run, 2, 1, 0.5, 0, data="x.npz")


def test_the_loaders_notes_are_shown(tmp_path, monkeypatch, fitted):
    """QA sweep 9: the Generate page converted and skipped files in silence (here: maps resized to the model)."""
    import numpy as np

    small = tmp_path / "small.npz"
    np.savez(small, maps=np.ones((4, 13, 13), np.uint8), labels=np.array(["none"] * 4))
    make_run(tmp_path / "runs", "tiny", small, fitted[1])
    monkeypatch.setenv("UDD_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception and not at.error, errors(at)
    assert any("4 maps from small.npz:maps resized 13x13 -> 26x26 (nearest)" in c.value for c in at.caption)


def latent_traces(app) -> list[str]:
    charts = [json.loads(c.proto.spec) for c in app.get("plotly_chart")]
    return [t.get("name") for t in charts[0]["data"]] if charts else []


def test_the_latent_map_shows_the_data_and_the_codes_drawn_above(at):
    names = latent_traces(at)
    assert names[0].startswith("none (") and names[-2:] == ["sources", "generated"]
    assert any("Crosses: the generated codes above" in c.value for c in at.caption)
    assert "Download the latent map (CSV)" in [b.proto.label for b in at.get("download_button")]
    at.radio(key="gen_mode").set_value("Random latents").run()
    assert not at.exception and latent_traces(at)[-1] == "random" and "sources" not in latent_traces(at)
    at.toggle(key="gen_latent_map").set_value(False).run()
    assert not at.exception and not at.get("plotly_chart")  # off: nothing encoded, nothing drawn


def test_the_interpolation_ends_follow_the_data_set(at, fitted, tmp_path):
    """QA sweep 11: after a larger set, a set of two images opened with both ends on image 0."""
    at.selectbox(key=next(s.key for s in at.selectbox if s.key.startswith("gen_interp_b_"))).set_value(5).run()
    with np.load(fitted[0]) as z:
        np.savez(tmp_path / "two.npz", maps=z["maps"][:2], labels=z["labels"][:2])
    at.text_input(key="gen_data_tiny").input(str(tmp_path / "two.npz")).run()
    assert not at.exception and not at.error, errors(at)
    ends = {s.label: s.value for s in at.selectbox if s.key.startswith("gen_interp_")}
    assert ends == {"From": 0, "To": 1}


def test_blank_wafers_from_a_detection_run_are_cautioned_above_them(runs_dir, monkeypatch):
    """QA sweep 19a: the page's 16 variants of a detection run were blank wafers, offered "for augmentation". The
    tiny test model rebuilds normal maps, as such a run does."""
    from udd_core import wafer_generation as wg

    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not app.exception
    said = [w.value for w in app.warning if "has a failing die" in w.value]
    assert len(said) == 1 and said[0].startswith("None of the 16 generated maps has a failing die, where their "
                                                 "sources have ")
    real = wg.generated_maps

    def one_failing(out, outline):  # variants with a failing die each: nothing to caution
        maps = real(out, outline)
        maps[outline == 1] = 2
        return maps

    monkeypatch.setattr(wg, "generated_maps", one_failing)
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not app.exception and not [w for w in app.warning if "has a failing die" in w.value]
