"""Comparing 2 to 4 runs side by side: what differs between them, and on which data they compare.

The Compare page's logic, without streamlit: the config and settings diffs (each field one row,
one value per run, changed rows flagged), the shape tables aligned stage by stage, the loss
curves of every run in one figure spec with notes on when they do not compare, and which runs
learned the data they are compared on. How the runs score the same images is `compare_scores`.
Runs without an autoencoder config (no config.json) show `NO_CONFIG` where the config and the
shapes would be.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from . import runs
from .data import resolved
from .methods import METHODS, detector_class, fitted_in_one_pass, run_spec, spec_options
from .methods.base import defaults_from
from .progress import epoch_axis, loss_axis
from .settings import applied_settings
from .model import CONFIG_FILE
from .image_shapes import FEATURE_METHODS, propagate_image
from .shapes import ShapeError

MIN_RUNS, MAX_RUNS = 2, 4
NO_CONFIG = "no autoencoder config"
SCORING_KEYS = ("residual", "score", "smooth_sigma", "topk_percent", "border")  # `methods.base.defaults_from`'s
UNREADABLE_CONFIG = "config.json unreadable"  # a run that has one, damaged: not "no config" (QA sweep 10)
MISSING = "—"  # a field one run has and another has not
ONE_PASS = "— (fitted in one pass)"  # a training-loop setting, in the column of a method without a training loop
SKIPPED_INFO = ("created", "resumed")  # train.json keys that differ between any two runs and say nothing


@dataclass(frozen=True)
class RunSide:
    """What the Compare page reads from one run folder (files only; no model is loaded)."""

    name: str
    path: Path
    method: str  # "autoencoder", "memory-bank", ... (methods.run_method)
    config: Optional[dict]  # config.json; None for a run of a method without an autoencoder config
    input_shape: Optional[tuple[int, int, int]]  # (C, H, W) from train.json
    info: dict  # train.json ({} when missing)
    history: list[dict]  # history.jsonl, one dict per epoch
    spec: dict = field(default_factory=dict)  # method.json (methods.run_spec): the method's parameters and fit

    @property
    def no_config(self) -> str:
        """Why the config column is empty: the run has none, or its config.json does not parse."""
        return UNREADABLE_CONFIG if (self.path / CONFIG_FILE).is_file() else NO_CONFIG


def read_side(run_dir: Union[str, Path]) -> RunSide:
    """One run's config, train.json and history; unreadable files count as missing."""
    p = Path(run_dir)
    config = runs.read_json(p / CONFIG_FILE, None)
    info = runs.read_train(p)
    try:
        spec = run_spec(p)
    except ValueError:
        spec = {"method": "unknown"}
    return RunSide(p.name, p, spec["method"], config if isinstance(config, dict) else None,
                   runs.train_shape(info), info, runs.read_history(p), spec)


# --- diffs -----------------------------------------------------------------------------------

def differ_line(changed: Sequence[str], among: str = "", shown: int = 8, noun: str = "field") -> str:
    """The line above a diff table: how many of its rows (fields, or a shape table's rows: `noun`) differ
    and the first `shown` of them, naming how many more the table holds (`among`: which runs took part,
    when not all)."""
    if not changed:
        return f"No {noun} differs{among}."
    more = f", and {len(changed) - shown} more in the table" if len(changed) > shown else ""
    word = f"{noun} differs" if len(changed) == 1 else f"{noun}s differ"
    return f"{len(changed)} {word}{among}: {', '.join(changed[:shown])}{more}."


@dataclass(frozen=True)
class DiffRow:
    """One field across the runs: its value in each (MISSING where a run lacks it), and whether they differ."""

    field: str
    values: tuple[str, ...]  # one per run, in the runs' order, as text
    changed: bool


def flatten(d: Mapping, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys ({"data": {"path": p}} -> {"data.path": p}); lists stay values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _show(v: Any) -> str:
    """A value as table text: strings as they are, an unset value (lr_step off, no patch_dir) as "none",
    anything else as compact JSON ("[[1, 4, 4], [4, 8, 8]]", "0.001"), so that one column holds one type."""
    return v if isinstance(v, str) else "none" if v is None else json.dumps(v)


def diff_rows(dicts: Sequence[Optional[Mapping]], absent: Union[str, Sequence[str]] = MISSING) -> list[DiffRow]:
    """One row per field of any of ``dicts`` (first-seen order). A None dict shows ``absent`` (one text, or
    one per dict) in its column and takes no part in deciding whether a row changed (a run without a config
    changes no config field)."""
    flat = [None if d is None else flatten(d) for d in dicts]
    gaps = [absent] * len(flat) if isinstance(absent, str) else list(absent)
    keys: dict[str, None] = {}
    for f in flat:
        keys.update(dict.fromkeys(f or {}))
    rows = []
    for k in keys:
        values = tuple(gap if f is None else _show(f.get(k, MISSING)) for f, gap in zip(flat, gaps))
        present = [v for f, v in zip(flat, values) if f is not None]
        rows.append(DiffRow(k, values, len(set(map(repr, present))) > 1))
    return rows


def config_diff(sides: Sequence[RunSide]) -> list[DiffRow]:
    """The autoencoder configs field by field; NO_CONFIG (or UNREADABLE_CONFIG) in the column of a run without one."""
    return diff_rows([s.config for s in sides], absent=[s.no_config for s in sides])


def settings_diff(sides: Sequence[RunSide]) -> list[DiffRow]:
    """The method and its parameters (method.json), then train.json field by field (settings, data,
    input shape, versions). The creation time and resume log are left out: they differ between any two
    runs. A method fitted in one pass shows ONE_PASS for the training-loop settings it does not have,
    and those cells take no part in deciding whether a row changed."""
    one_pass = [fitted_in_one_pass(s.method) for s in sides]
    dicts = []
    for s, single in zip(sides, one_pass):
        info = {k: v for k, v in s.info.items() if k not in SKIPPED_INFO and k != "options"}  # options: in spec
        if isinstance(info.get("settings"), Mapping):
            info["settings"] = applied_settings(info["settings"], not single)
        # Every scoring key, so that two runs that record none (plain autoencoders) still show what they score
        # with (QA sweep 15); a run of no known method has no defaults to show.
        scoring = dict.fromkeys(SCORING_KEYS, MISSING) if s.method in METHODS else {}
        options = {**scoring, **spec_options(s.spec)}
        dicts.append({"method": s.method, **({"method options": options} if options else {}), **info})
    rows = []
    for r in diff_rows(dicts):
        if r.field.startswith("settings.") and any(single and v == MISSING for single, v in zip(one_pass, r.values)):
            values = tuple(ONE_PASS if single and v == MISSING else v for single, v in zip(one_pass, r.values))
            r = DiffRow(r.field, values, len({v for v in values if v != ONE_PASS}) > 1)
        elif (key := r.field.removeprefix("method options.")) in SCORING_KEYS:
            # A run that records no scoring key scores with the method's default: said so, not "—" as if
            # missing (QA sweeps 11 and 12). An autoencoder records none at all: what its spec holds is the
            # default its training loss suggests (SSIM: ssim, top 1%), a default too (QA sweep 13).
            values = tuple(v if s.method not in METHODS else
                           f"{_show(scoring_default(s, key))} (default)" if v == MISSING else
                           f"{v} (default)" if s.method == "autoencoder" else v for s, v in zip(sides, r.values))
            r = DiffRow(r.field, values, len({str(v).removesuffix(" (default)") for v in values}) > 1)
        rows.append(r)
    return rows


def scoring_default(side: RunSide, key: str) -> Any:
    """The value a run scores with for scoring `key` when its method.json records none: its method's default."""
    return defaults_from(side.spec, detector_class(side.method).residuals)[key]


def shape_rows(sides: Sequence[RunSide]) -> list[DiffRow]:
    """The stage shapes (C x H x W) aligned by stage name, then params, MACs, latent, compression and
    receptive field; a stage that differs between runs is flagged. `RunSide.no_config` for runs without one,
    and the reason for a config that cannot run at its input size."""
    reports: list[Optional[dict]] = []
    for s in sides:
        if s.config is None or s.input_shape is None:
            reports.append(None)
            continue
        try:
            r = propagate_image(s.config, s.input_shape, s.method)  # a feature AE: from its feature tensor
        except (ShapeError, ValueError) as e:
            reports.append({"input": "x".join(map(str, s.input_shape)), "error": str(e).splitlines()[0]})
            continue
        row = {"input": "x".join(map(str, r.input))}
        for st in r.stages:
            row[st.name] = "x".join(map(str, st.out)) + ("" if st.ok else " (mismatch)")
        row.update(params=r.params, MACs=r.macs, latent="x".join(map(str, r.latent)),
                   compression=round(r.compression, 6), receptive_field=r.receptive_field)
        reports.append(row)
    return diff_rows(reports, absent=[s.no_config for s in sides])


# --- training ---------------------------------------------------------------------------------

# One colour per run (MAX_RUNS of them), the same in the loss curves and the ROC: Streamlit's theme would
# give runs neighbouring shades of one blue.
RUN_COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#e45756")
RUN_MARKERS = ("circle", "square-open", "diamond-open", "x-thin-open")  # identical curves still show each run


def loss_figure(sides: Sequence[RunSide], log: bool = False) -> dict:
    """Every run's per-epoch train (solid) and validation (dotted) loss in one plotly figure spec,
    one colour per run."""
    data = []
    for s, colour, marker in zip(sides, RUN_COLOURS, RUN_MARKERS):
        epochs = [h.get("epoch", i + 1) for i, h in enumerate(s.history)]
        for key, dash, what in (("train_loss", "solid", "train"), ("val_loss", "dot", "validation")):
            ys = [h.get(key) for h in s.history]
            if any(isinstance(v, (int, float)) for v in ys):
                data.append({"type": "scatter", "mode": "lines+markers", "x": epochs, "y": ys,
                             "name": f"{s.name} · {what}", "line": {"color": colour, "dash": dash},
                             "marker": {"symbol": marker, "size": 9}})
    layout = {"height": 360, "margin": {"l": 10, "r": 10, "t": 30, "b": 10},
              "legend": {"orientation": "h", "y": 1.15, "x": 0},
              "xaxis": epoch_axis(max((len(s.history) for s in sides), default=1)),
              "yaxis": loss_axis(log, data)}
    return {"data": data, "layout": layout}


def wants_log_scale(sides: Sequence[RunSide], ratio: float = 10.0) -> bool:
    """Whether the runs' loss curves sit more than `ratio` times apart (a feature AE's ~0.8 beside a pixel AE's
    ~0.006): on a linear axis the lower curves lie flat on zero, so the Compare page opens them on a log one."""
    lasts = [v for s in sides for h in s.history[-1:] for k in ("train_loss", "val_loss")
             if isinstance(v := h.get(k), (int, float)) and v > 0]
    return len(lasts) > 1 and max(lasts) > ratio * min(lasts)


def curve_notes(sides: Sequence[RunSide]) -> list[str]:
    """Why the loss curves of `loss_figure` may not compare by value: runs whose losses measure different
    things (the loss, on pixels or on backbone features), or that trained on different data; and the runs
    that draw no curve (fitted in one pass)."""
    drawn, kinds = [s for s in sides if s.history], {}
    for s in drawn:
        on = "features" if s.method in FEATURE_METHODS or (s.config or {}).get("input") else "pixels"
        kinds.setdefault(f"{runs.train_settings(s.info).get('loss') or 'mse'} on {on}", []).append(s.name)
    notes, sources = [], [runs.train_source(s.info) for s in drawn]
    # The same images at two places are the same data: by train.json's digest of them, where every run has one
    # (QA sweep 21: "trained on different data" of two copies of one folder), else by their paths.
    same_by = "digest" if all(src.get("digest") for src in sources) else "path"
    if len(kinds) > 1:
        groups = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in kinds.items())
        notes.append(f"these curves measure different losses ({groups}): compare their shapes, not their heights")
    elif len({str(src.get(same_by)) for src in sources}) > 1:
        notes.append("these runs trained on different data: the same loss can sit at another level on other images")
    curves: dict[tuple, list[str]] = {}
    for s in drawn:  # the same numbers draw the same line: the later run's hides the earlier's (QA sweep 7)
        curves.setdefault(tuple((h.get("train_loss"), h.get("val_loss")) for h in s.history), []).append(s.name)
    for names in (n for n in curves.values() if len(n) > 1):
        notes.append(f"the loss curves of {' and '.join(names)} are identical and drawn on top of each other "
                     "(the marker shapes tell them apart)")
    if drawn and (flat := [s.name for s in sides if fitted_in_one_pass(s.method)]):
        # The note starts with words, not a run name: the page capitalises a note's first letter.
        notes.append(f"no curve for {', '.join(flat)}: fitted in one pass, with no training epochs")
    return notes


def _trained_on(info: Mapping[str, Any]) -> Optional[Path]:
    """The data folder or file a train.json (``info``) names, resolved; None when it names none."""
    path = runs.train_source(info).get("path")
    return resolved(path) if isinstance(path, str) and path else None


def _data_path(run_dir: Path) -> Optional[Path]:
    return _trained_on(runs.read_train(run_dir))


def same_data_first(focus: Union[str, Path], others: Sequence[Union[str, Path]]) -> list[Path]:
    """`others` (run folders, in the caller's order) with the runs trained on the focus run's data first:
    the default partner of a comparison is a run that can be judged on the same images."""
    here = _data_path(Path(focus))
    others = [Path(o) for o in others]
    same = [o for o in others if here is not None and _data_path(o) == here]
    return same + [o for o in others if o not in same]
