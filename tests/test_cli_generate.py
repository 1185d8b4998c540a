"""`udd generate`: PNGs from noised or random latents of a run, end to end through cli.main and the script."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_generation import COLOURS, WAFER_CFG, fitted, fitted_model, make_run, write_wafers  # noqa: F401 - fitted is a fixture

from udd_core import runs
from udd_core import run_status
from udd_core.cli import main
from udd_core.model import build_model, save_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run(tmp_path, fitted):
    data, model = fitted
    write_wafers(tmp_path / "w.npz")  # the same maps (fixed seed) at a path of this test
    return make_run(tmp_path / "runs", data=data, model=model)


def udd(capsys, *argv):
    rc = main(["generate", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def colours(path: Path) -> set:
    return {tuple(c) for c in np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)}


def test_writes_n_wafer_pngs_from_the_chosen_class(run, tmp_path, capsys):
    out = tmp_path / "out" / "donuts"
    rc, stdout, err = udd(capsys, run, "--sigma", 0.5, "-n", 5, "--out", out, "--class", "Donut", "--seed", 3)
    assert rc == 0, err
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"sample_{i:04d}.png" for i in range(5)]
    lines = stdout.splitlines()
    assert len(lines) == 5 and all(line.endswith("(Donut)") for line in lines)
    assert lines[0].startswith(str(out / "sample_0000.png"))
    assert "wrote 5 wafer maps" in err
    for f in files:
        im = Image.open(f)
        assert im.size == (130, 130) and colours(f) <= COLOURS  # rendered maps, not raw channels


def test_sources_gives_the_generate_pages_rows(run, tmp_path, capsys):
    """The page's 'Source images' K x 'Variants per source' V is `-n K*V --sources K`: the same sources, the
    same noise, so the same maps (the page calls generate with n_sources=K)."""
    from udd_core.generation import generate, load_generator, load_images

    rc, stdout, err = udd(capsys, run, "--sigma", 0.5, "-n", 6, "--sources", 2, "--out", tmp_path / "o", "--seed", 4)
    assert rc == 0, err
    origins = [line.split("\t")[1] for line in stdout.splitlines()]
    assert len(set(origins)) == 2 and origins[:2] == origins[2:4] == origins[4:]  # output j from source j % 2
    model = load_generator(run)
    ds = load_images(model, runs.run_source(run)["path"])
    page = generate(model, ds.images, 0.5, 6, 4, ds.labels, None, n_sources=2)
    assert [f"{ds.names[s]} ({ds.labels[s]})" for s in page.sources.tolist()] == origins


def test_same_seed_same_files_other_seed_differs(run, tmp_path, capsys):
    # The tiny model draws almost every die on the wafer "good", and each map keeps its source's outline: a
    # large sigma is what makes the seed's noise show in the dies.
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        assert udd(capsys, run, "--data", tmp_path / "w.npz", "--sigma", 100, "-n", 4, "--out", tmp_path / name,
                   "--seed", seed)[0] == 0
    read = {n: [(tmp_path / n / f"sample_{i:04d}.png").read_bytes() for i in range(4)] for n in "abc"}
    assert read["a"] == read["b"] and read["a"] != read["c"]


def test_refuses_to_overwrite_unless_forced(run, tmp_path, capsys):
    out = tmp_path / "out"
    assert udd(capsys, run, "--sigma", 0.5, "-n", 3, "--out", out, "--seed", 1)[0] == 0
    before = (out / "sample_0000.png").read_bytes()
    rc, stdout, err = udd(capsys, run, "--sigma", 100, "-n", 3, "--out", out, "--seed", 9)
    assert rc == 2 and stdout == ""
    assert err.count("\n") == 1 and "sample_0000.png: already exists" in err and "--force" in err
    assert (out / "sample_0000.png").read_bytes() == before
    rc, _, err = udd(capsys, run, "-n", 3, "--out", out)  # QA sweep 12: refused only after the default σ line
    assert rc == 2 and err.count("\n") == 1
    assert "sample_0000.png: already exists, and so do 2 more of the files to write" in err
    assert udd(capsys, run, "-n", 3, "--out", out, "--random")[0] == 0  # random_*.png: other names
    rc, _, err = udd(capsys, run, "-n", 3, "--out", out, "--random")
    assert rc == 2 and err.count("\n") == 1 and "random_0000.png: already exists" in err
    rc, _, err = udd(capsys, run, "--sigma", 100, "-n", 3, "--out", out, "--seed", 9, "--force")
    assert rc == 0, err
    assert (out / "sample_0000.png").read_bytes() != before
    assert len(list(out.iterdir())) == 6  # no temp files left behind


def test_random_latents(run, tmp_path, capsys):
    rc, stdout, err = udd(capsys, run, "--random", "-n", 3, "--out", tmp_path / "r")
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["random_0000.png", "random_0001.png",
                                                                 "random_0002.png"]
    assert all(colours(p) <= COLOURS for p in (tmp_path / "r").iterdir())


def test_random_latents_per_position(tmp_path, capsys):
    data = write_wafers(tmp_path / "w.npz")
    run = make_run(tmp_path / "runs", data=data, model=fitted_model(data, steps=300))  # draws outlines
    written = {}
    for flag in ("--per-position", None):
        out = tmp_path / str(flag)
        rc, _, err = udd(capsys, run, "--random", *([flag] if flag else []), "-n", 2, "--out", out, "--seed", 4)
        assert rc == 0, err
        written[flag] = [p.read_bytes() for p in sorted(out.iterdir())]
    assert len(written["--per-position"]) == 2 and written["--per-position"] != written[None]


@pytest.mark.parametrize("extra, message", [
    (["--sigma", "0.5", "--per-position"], "--per-position: applies only with --random"),
    (["--sigma", "0.5", "--class", "Nope"], "class 'Nope': no images with this label"),
    (["--sigma", "0.5", "--npz", "out.txt"], "--npz out.txt: the file name must end in .npz"),
    (["--random", "--npz", "g.npz"], "--npz: needs source maps"),
    (["--random", "--class", "Donut"], "--class: does not apply with --random"),
    (["--random", "--sources", "1"], "--sources: does not apply with --random"),
    (["--sigma", "0.5", "--sources", "3"], "--sources: must be between 1 and -n (2), got 3"),
    (["--class", "Nope"], "class 'Nope': no images with this label"),  # before the default σ is printed
    (["--sigma", "-1"], "--sigma: must be a number in [0, 1e+06], got -1"),  # QA: as typed, not -1.0
    (["--sigma", "nan"], "--sigma: must be a number in [0, 1e+06], got nan"),
    (["--sigma", "1e308"], "--sigma: must be a number in [0, 1e+06], got 1e+308"),
    (["--sigma", "0.5", "-n", "0"], "-n: must be an integer in [1, 10000], got 0"),
    (["--sigma", "0.5", "--size", "32,32"], "trained for 26x26"),
    (["--sigma", "0.5", "--data", "/no/such/data.npz"], "no such file"),
    (["--sigma", "0.5", "--out", " "], "--out: the folder name is empty"),
    (["--sigma", "0.5", "--latent-map", "map.txt"], "--latent-map map.txt: the file name must end in .csv"),
    (["--sigma", "0.5", "--latent-map", "/no/such/map.csv"], "--latent-map /no/such/map.csv: /no/such: no such folder"),
])
def test_bad_input_is_one_line_and_exit_2(run, tmp_path, capsys, extra, message):
    rc, stdout, err = udd(capsys, run, "-n", 2, "--out", tmp_path / "o", *extra)
    assert rc == 2 and stdout == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs a folder no file can be created in")
def test_an_npz_that_cannot_be_written_leaves_no_pngs(run, tmp_path, capsys):
    """Refused before any work where the folder is not writable; else the PNGs written are removed again."""
    rc, stdout, err = udd(capsys, run, "--sigma", 0.5, "-n", 3, "--out", tmp_path / "o", "--npz", "/proc/udd_x.npz")
    assert rc == 2 and err.count("\n") == 1 and "/proc" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists() and not Path("/proc/udd_x.npz").exists()
    (tmp_path / "a_file").write_text("x")  # a file where the folder should be: refused up front
    rc, _, err = udd(capsys, run, "--sigma", 0.5, "-n", 3, "--out", tmp_path / "o", "--npz", tmp_path / "a_file" / "g.npz")
    assert rc == 2 and f"cannot write into {tmp_path / 'a_file'}" in err and not (tmp_path / "o").exists()
    typo = tmp_path / "no_such" / "deeper" / "g.npz"  # a typo in the folder: refused, no folders made
    rc, _, err = udd(capsys, run, "--sigma", 0.5, "-n", 3, "--out", tmp_path / "o", "--npz", typo)
    assert rc == 2 and f"{typo.parent}: no such folder" in err and not (tmp_path / "no_such").exists()
    rc, _, err = udd(capsys, run, "--sigma", 0.5, "-n", 3, "--out", tmp_path / "gen", "--npz", tmp_path / "gen" / "g.npz")
    assert rc == 0 and (tmp_path / "gen" / "g.npz").is_file(), err  # into the PNG folder it creates: as the README does


def test_npz_from_a_one_channel_model_on_images_names_the_real_cause(tmp_path, capsys, tiny_config):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 32), 100 + 10 * i, np.uint8)).save(folder / f"{i}.png")
    save_model(build_model(tiny_config), tmp_path / "gray")  # a 1-channel model
    rc, _, err = udd(capsys, tmp_path / "gray", "--sigma", 0.5, "-n", 2, "--size", "32,32", "--data", folder,
                     "--npz", tmp_path / "g.npz", "--out", tmp_path / "o")
    assert rc == 2 and err.count("\n") == 1
    assert "holds images, not wafer maps" in err and "3-channel" not in err  # it is not a 3-channel model
    assert not (tmp_path / "g.npz").exists() and not (tmp_path / "o").exists()


def test_model_folder_without_a_size_needs_size_and_data(tmp_path, capsys):
    data = write_wafers(tmp_path / "w.npz")
    save_model(build_model(WAFER_CFG), tmp_path / "bare")  # stores no input shape, names no data
    rc, _, err = udd(capsys, tmp_path / "bare", "--sigma", 0.5, "-n", 2, "--out", tmp_path / "o")
    assert rc == 2 and "stores no input size" in err
    rc, _, err = udd(capsys, tmp_path / "bare", "--sigma", 0.5, "-n", 2, "--out", tmp_path / "o", "--size", "26,26")
    assert rc == 2 and "--data is required" in err
    rc, _, err = udd(capsys, tmp_path / "bare", "--sigma", 0.5, "-n", 2, "--out", tmp_path / "o", "--size", "26,26",
                     "--data", data)
    assert rc == 0, err
    assert len(list((tmp_path / "o").glob("sample_*.png"))) == 2


def test_reference_folder_takes_its_size_from_the_data(tmp_path, capsys):
    import torch

    data = write_wafers(tmp_path / "w.npz")  # 26x26 maps
    ref = tmp_path / "reference"  # the reference package's format: a printed dict and a torch state dict
    ref.mkdir()
    (ref / "AE_config.txt").write_text(str(WAFER_CFG))
    torch.save(build_model(WAFER_CFG).state_dict(), ref / "AE_state.save")
    rc, stdout, err = udd(capsys, ref, "--data", data, "--sigma", 0.5, "-n", 3, "--out", tmp_path / "o")
    assert rc == 0, err
    assert "note: the model folder stores no input size: using the images' own size 26x26" in err
    assert len(stdout.splitlines()) == 3 and len(list((tmp_path / "o").glob("sample_*.png"))) == 3
    # The same notice as `udd score` on that folder.
    assert main(["score", str(ref), "--data", str(data)]) == 0
    assert "note: the model folder stores no input size: using the images' own size 26x26" in capsys.readouterr().err


def test_installed_script(run, tmp_path):
    exe = ROOT / ".venv" / "bin" / "udd"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "udd_core.cli"]
    out = tmp_path / "script"
    r = subprocess.run([*cmd, "generate", str(run), "--sigma", "1", "-n", "2", "--out", str(out), "--class", "none"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2 and "(none)" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["sample_0000.png", "sample_0001.png"]
    r = subprocess.run([*cmd, "generate", str(run), "--sigma", "1", "-n", "2", "--out", str(out)],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 2 and "already exists" in r.stderr and "Traceback" not in r.stderr


def test_a_run_still_training_is_noted_first(run, tmp_path, capsys):
    """QA: `udd score` and `udd export` said that a run was unfinished; `udd generate` did not."""
    run_status.write_status(run, "stopped", "stopped after 1 of 3 epochs")
    rc, _, err = udd(capsys, run, "--sigma", 0.5, "-n", 2, "--out", tmp_path / "g")
    assert rc == 0 and err.splitlines()[0].startswith(f"note: run {run.name} is stopped (after 1 of 3 epochs)")


def test_scoring_wafer_maps_with_the_feature_residual_is_noted(run, capsys):
    """QA: `udd score --residual feature` took one-hot wafer maps without a word."""
    assert main(["score", str(run), "--residual", "feature", "--json"]) == 0
    notices = json.loads(capsys.readouterr().out)["notices"]
    assert any(n.startswith("the feature residual compares an ImageNet backbone's features") for n in notices)
    assert main(["score", str(run), "--json"]) == 0
    assert not any("feature residual" in n for n in json.loads(capsys.readouterr().out)["notices"])


def test_a_split_given_for_a_wafer_file_is_noted(run, capsys):
    """QA: `udd score --split train` on a wafer file was ignored without a word."""
    assert main(["score", str(run), "--split", "train", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["notices"][0].startswith("--split train: ") and out["notices"][0].endswith(
        "has no splits; all its images were scored")
    assert out["settings"]["split"] == "all"
    assert main(["score", str(run), "--json"]) == 0  # no --split typed: nothing to say
    assert not any(n.startswith("--split") for n in json.loads(capsys.readouterr().out)["notices"])


def test_photos_for_a_wafer_run_are_refused_as_udd_score_refuses_them(run, tmp_path, capsys):
    """QA: `udd generate` only warned, wrote the images, and took its default σ from the photos."""
    photos = Path(__file__).resolve().parents[1] / "sample_data" / "surface"
    rc, stdout, err = udd(capsys, run, "-n", 2, "--out", tmp_path / "o", "--data", photos)
    assert rc == 2 and stdout == "" and err.count("\n") == 1
    assert "the run was trained on wafer maps but these data are images" in err
    assert err.rstrip().endswith("generate from data of the kind it trained on")
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs a folder no folder can be created in")
def test_output_places_are_refused_before_any_work(run, tmp_path, capsys, monkeypatch):
    import udd_core.cli_generate as cli_generate

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(cli_generate, "load_generator", no_model)
    (tmp_path / "a_file").write_text("x")
    for extra, message in ((["--out", "/proc/gen"], "--out /proc/gen: cannot write into /proc"),
                           (["--out", tmp_path / "a_file"], f"--out {tmp_path / 'a_file'}: exists and is not a folder"),
                           (["--out", tmp_path / "o", "--npz", f"{tmp_path / 'g.npz'}/"],
                            f"--npz {tmp_path / 'g.npz'}/: names a folder (it ends in /); give a file name")):
        rc, stdout, err = udd(capsys, run, "--sigma", 0.5, "-n", 2, *extra)
        assert rc == 2 and stdout == "" and err == f"udd generate: error: {message}\n"
    assert not (tmp_path / "o").exists() and not (tmp_path / "g.npz").exists()


def test_out_inside_the_data_folder_is_refused(tmp_path, capsys, tiny_config):
    """QA sweep 8: PNGs written into the image folder a run generates from join its images on the next load."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 32), 100 + 10 * i, np.uint8)).save(folder / f"{i}.png")
    save_model(build_model(tiny_config), tmp_path / "gray")
    rc, _, err = udd(capsys, tmp_path / "gray", "--sigma", 0.5, "-n", 2, "--size", "32,32", "--data", folder,
                     "--out", folder / "gen")
    assert rc == 2 and f"--out {folder / 'gen'}: lies inside the data set" in err and err.count("\n") == 1, err
    assert not (folder / "gen").exists() and len(list(folder.iterdir())) == 3
    rc, _, err = udd(capsys, tmp_path / "gray", "--sigma", 0.5, "-n", 2, "--size", "32,32", "--data", folder,
                     "--out", tmp_path / "gen")
    assert rc == 0, err


def test_skipped_and_converted_files_are_noted(tmp_path, capsys, tiny_config):
    """QA sweep 9: `udd generate` and the Generate page skipped unreadable files and converted images in
    silence, where `udd score` names them."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 32), 100 + 10 * i, np.uint8)).save(folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    save_model(build_model(tiny_config), tmp_path / "gray")
    rc, _, err = udd(capsys, tmp_path / "gray", "--sigma", 0.5, "-n", 2, "--size", "32,32", "--data", folder,
                     "--out", tmp_path / "o")
    assert rc == 0 and "note: skipped broken.png" in err, err


def test_latent_map_csv_holds_the_pages_map_and_the_codes_it_decoded(run, tmp_path, capsys):
    """`--latent-map` writes the Generate page's map: the same axes, each image's place, and each generated
    code placed where the page draws its cross (the codes that were decoded into the PNGs)."""
    import csv

    from udd_core.generation import generate, load_generator, load_images
    from udd_core.latent_map import fit_latent_map

    table = tmp_path / "o" / "map.csv"
    rc, stdout, err = udd(capsys, run, "--sigma", 0.5, "-n", 6, "--sources", 2, "--out", tmp_path / "o",
                          "--seed", 4, "--latent-map", table)
    assert rc == 0, err
    assert "wrote the latent map (" in err and str(table) in err
    rows = list(csv.DictReader(table.open()))
    model = load_generator(run)
    ds = load_images(model, json.loads((run / "train.json").read_text())["data"]["path"])
    lmap = fit_latent_map(model, ds)
    data, made = [r for r in rows if r["kind"] == "data"], [r for r in rows if r["kind"] == "generated"]
    assert len(data) == len(ds) and [r["label"] for r in data] == list(ds.labels)
    np.testing.assert_allclose([[float(r["x"]), float(r["y"])] for r in data], lmap.xy, rtol=1e-5, atol=1e-5)
    g = generate(model, ds.images, 0.5, 6, 4, ds.labels, n_sources=2)
    assert [r["name"] for r in made] == [f"sample_{j:04d}.png" for j in range(6)]
    assert [int(r["source"]) for r in made] == g.sources.tolist()
    assert [r["label"] for r in made] == [ds.labels[i] for i in g.sources.tolist()]
    np.testing.assert_allclose([[float(r["x"]), float(r["y"])] for r in made], lmap.place(g.latents),
                               rtol=1e-5, atol=1e-5)
    assert float(rows[0]["axis1_variance"]) == pytest.approx(lmap.explained[0], rel=1e-5)
    rc, _, err = udd(capsys, run, "--random", "-n", 3, "--out", tmp_path / "r", "--latent-map", table)
    assert rc == 2 and "--latent-map" in err and "already exists" in err and not (tmp_path / "r").exists()
    rc, _, err = udd(capsys, run, "--random", "-n", 3, "--out", tmp_path / "r", "--latent-map", table, "--force")
    assert rc == 0, err
    made = [r for r in csv.DictReader(table.open()) if r["kind"] != "data"]
    assert [r["kind"] for r in made] == ["random"] * 3 and {r["source"] for r in made} == {""}


def test_a_latent_map_of_one_image_is_refused_before_the_sigma_line(run, tmp_path, capsys):
    """QA sweep 11: the refusal came after `sigma ... (the default ...)` was printed, and named no option."""
    with np.load(json.loads((run / "train.json").read_text())["data"]["path"]) as z:
        np.savez(tmp_path / "one.npz", maps=z["maps"][:1], labels=z["labels"][:1])
    rc, _, err = udd(capsys, run, "-n", 2, "--data", tmp_path / "one.npz", "--out", tmp_path / "o",
                     "--latent-map", tmp_path / "m.csv")
    assert rc == 2 and "sigma" not in err and not (tmp_path / "o").exists() and not (tmp_path / "m.csv").exists()
    assert f"--latent-map {tmp_path / 'm.csv'}: a map needs the codes of at least 2 images" in err


def test_a_file_given_as_run_is_said_to_be_a_file(tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text("{}")
    rc, _, err = udd(capsys, cfg, "-n", 1, "--out", tmp_path / "o")
    assert rc == 2 and f"{cfg}: a file, not a run or model folder" in err  # it was "no such run or model folder"


def test_one_output_is_counted_in_the_singular(run, tmp_path, capsys):
    """QA sweep 12: "wrote 1 wafer maps"."""
    rc, _, err = udd(capsys, run, "--sigma", 0.5, "-n", 1, "--out", tmp_path / "one", "--npz", tmp_path / "one.npz")
    assert rc == 0 and f"wrote 1 wafer map to {tmp_path / 'one'}" in err and "wrote 1 map (die values" in err


def test_a_run_whose_data_moved_is_told_to_give_its_new_place(tmp_path, fitted, capsys):
    """QA sweep 13: "/x: no such file or folder", where udd score and train say what happened."""
    gone = make_run(tmp_path / "runs", "gone", data=tmp_path / "moved-away.npz", model=fitted[1])
    rc, _, err = udd(capsys, gone, "-n", 2, "--out", tmp_path / "g")
    assert rc == 2 and err == (f"udd generate: error: {tmp_path / 'moved-away.npz'}: the run's training data is gone "
                               "(moved or deleted); give its new place with --data PATH\n")
    assert not (tmp_path / "g").exists()
    assert udd(capsys, gone, "-n", 2, "--out", tmp_path / "g", "--data", fitted[0])[0] == 0


def test_blank_wafers_from_a_detection_run_are_cautioned(run, tmp_path, capsys, monkeypatch):
    """QA sweep 19a: a run trained for detection generated 12 of 12 blank wafers, said only "wrote 12 wafer maps"."""
    from udd_core import wafer_generation as wg

    maps = np.array([[[0, 1], [1, 2]], [[0, 1], [1, 1]]], np.uint8)  # (2, 2, 2) die values
    assert wg.no_failing_dies_note(maps, maps) is None  # a failing die among the variants: nothing to say
    blank = np.minimum(maps, 1)
    assert wg.no_failing_dies_note(blank, blank) is None  # sources without failing dies: nothing lost
    assert wg.no_failing_dies_note(blank, maps).startswith("none of the 2 generated maps has a failing die, where "
                                                          "their sources have 1: this run rebuilds normal maps")
    real = wg.generated_maps
    monkeypatch.setattr(wg, "generated_maps", lambda out, outline: np.minimum(real(out, outline), 1))  # detection-like
    rc, _, err = udd(capsys, run, "--sigma", 0.5, "-n", 4, "--out", tmp_path / "o", "--class", "Donut")
    assert rc == 0 and "warning: none of the 4 generated maps has a failing die" in err
    assert "train the wafer-26-gen model with the wafer-generation training preset" in err
