"""The architecture as the Design page shows it: the block table, shape tables, totals and a picture.

Pure functions of an `AEConfig` or a `ShapeReport`; they return plain rows (lists of dicts) or a
plotly figure, so the page only draws them and the tests need no browser.

The block table has one row per index i of the config's lists: `block_ker[i]`, `drop[i]`,
`block_size_in[i]` (encoder block i+1) and `block_size_out[i]`, `out_pad[i]` (decoder block i+1,
counted from the latent). That is the config's own layout, so a row edit maps to one list entry.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Mapping, Optional

import plotly.graph_objects as go

from .config import AEConfig, ConfigError, config_text, pad_pair
from .feature_input import FeatureInput, parse_input
from .image_shapes import propagate_image
from .shapes import ShapeError, ShapeReport, receptive_field_text

# A latent with this many numbers per input number (or more) can simply copy the image through.
IDENTITY_RATIO = 0.25

BLOCK_COLUMNS = (
    "kernel", "drop", "enc_in", "enc_mid", "enc_out", "dec_in", "dec_mid", "dec_out", "out_pad_h", "out_pad_w",
)
_FEATURES = {
    "enc_in": ("block_size_in", 0), "enc_mid": ("block_size_in", 1), "enc_out": ("block_size_in", 2),
    "dec_in": ("block_size_out", 0), "dec_mid": ("block_size_out", 1), "dec_out": ("block_size_out", 2),
}
COLORS = {"input": "#8c8c8c", "encoder": "#4c78a8", "latent": "#f58518", "decoder": "#54a24b", "mismatch": "#e45756"}


# --- the block table ---------------------------------------------------------------------------

def block_rows(config: AEConfig) -> list[dict[str, Any]]:
    """One row per block index, with the columns of `BLOCK_COLUMNS`."""
    rows = []
    for i in range(config.n_blocks):
        ein, emid, eout = config.block_size_in[i]
        din, dmid, dout = config.block_size_out[i]
        ph, pw = pad_pair(config.out_pad[i])
        rows.append({"kernel": config.block_ker[i], "drop": config.drop[i], "enc_in": ein, "enc_mid": emid,
                     "enc_out": eout, "dec_in": din, "dec_mid": dmid, "dec_out": dout,
                     "out_pad_h": ph, "out_pad_w": pw})
    return rows


def apply_block_edits(config: AEConfig, edited_rows: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """The config dict after cell edits `{row: {column: value}}` (a data editor's `edited_rows`).

    Feature counts that must chain follow the edited cell, so one edit keeps the config valid:
    enc_out[i] <-> enc_in[i+1], dec_out[i] <-> dec_in[i+1], and enc_in[0] <-> dec_out[-1] (the
    image channels). A cell edited explicitly is never overwritten. The result is not validated:
    pass it to `parse_config`, which names the bad field.
    """
    d = config.to_dict()
    n = config.n_blocks
    edited: dict[tuple[str, int], Any] = {}
    for row, changes in edited_rows.items():
        if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < n:
            raise ConfigError("block table", f"row {row!r} does not exist (the config has {n} blocks)")
        for col, value in changes.items():
            if col not in BLOCK_COLUMNS:
                raise ConfigError("block table", f"unknown column {col!r}")
            if value is None:  # the editor sends None for a cleared cell or typed letters (QA sweep 19b: "got None")
                raise ConfigError("block table", f"row {row + 1}, {col}: a number is needed (the cell was left empty, "
                                                 "or what was typed is not a number)")
            edited[(col, row)] = value

    def put(col: str, row: int, value: Any) -> None:
        if col != "drop" and isinstance(value, float) and value.is_integer():
            value = int(value)  # editors may send 3.0 for 3
        if col == "kernel":
            d["block_ker"][row] = value
        elif col == "drop":
            d["drop"][row] = value
        elif col in _FEATURES:
            name, j = _FEATURES[col]
            d[name][row][j] = value
        else:  # out_pad_h / out_pad_w: one int when both sides agree, else [h, w]
            h, w = pad_pair(d["out_pad"][row])
            h, w = (value, w) if col == "out_pad_h" else (h, value)
            d["out_pad"][row] = h if h == w and isinstance(h, int) else [h, w]

    for (col, row), value in edited.items():
        put(col, row, value)
    links = [(("enc_out", i), ("enc_in", i + 1)) for i in range(n - 1)]
    links += [(("dec_out", i), ("dec_in", i + 1)) for i in range(n - 1)]
    links.append((("enc_in", 0), ("dec_out", n - 1)))
    for a, b in links:  # every cell is in at most one link, so one pass settles them all
        if a in edited and b not in edited:
            put(*b, edited[a])
        elif b in edited and a not in edited:
            put(*a, edited[b])
    return d


def resize_blocks(config: AEConfig, n: int) -> AEConfig:
    """The config with `n` blocks: adds or removes the deepest block (next to the latent) on both sides.

    An added block keeps the deepest block's kernel, dropout and features; its output padding is a
    guess that the shape solver may need to correct.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError("blocks", f"expected a positive integer, got {n!r}")
    ker, drop = list(config.block_ker), list(config.drop)
    bin_, bout, opad = list(config.block_size_in), list(config.block_size_out), list(config.out_pad)
    while len(ker) < n:
        f = bin_[-1][2]
        ker.append(ker[-1])
        drop.append(drop[-1])
        bin_.append((f, f, f))
        bout.insert(0, (f, f, bout[0][0]))  # the decoder's first block now feeds the old first one
        opad.insert(0, 1)
    while len(ker) > n:
        ker.pop(), drop.pop(), bin_.pop(), bout.pop(0), opad.pop(0)
    return replace(config, block_ker=tuple(ker), drop=tuple(drop), block_size_in=tuple(bin_),
                   block_size_out=tuple(bout), out_pad=tuple(opad))


def set_image_channels(config: AEConfig, channels: int) -> AEConfig:
    """The config for images of `channels` channels: the first encoder input and last decoder output."""
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ConfigError("channels", f"expected a positive integer, got {channels!r}")
    first, last = config.block_size_in[0], config.block_size_out[-1]
    return replace(config, block_size_in=((channels, *first[1:]),) + config.block_size_in[1:],
                   block_size_out=config.block_size_out[:-1] + ((*last[:2], channels),))


def with_input(config: AEConfig, spec: Optional[FeatureInput], image_channels: int) -> AEConfig:
    """The config reconstructing the pixels of `image_channels`-channel images (`spec` None) or the backbone
    features `spec` describes: the first encoder input and last decoder output follow its channels."""
    return set_image_channels(replace(config, input=spec), image_channels if spec is None else spec.channels)


def latent_fields(size: int, kernel: int, opad_h: int, opad_w: int) -> dict[str, Any]:
    """The latent block's config fields from the form's boxes: one output padding when H and W agree."""
    return {"latent_size": size, "latent_ker": kernel, "latent_opad": opad_h if opad_h == opad_w else [opad_h, opad_w]}


def with_solved_paddings(config: AEConfig, image_shape: tuple[int, int, int]) -> AEConfig:
    """`config` with the padding solver's output paddings at `image_shape` (C, H, W) when it has some: an
    edit that adds a block or changes the input only guesses them. Unchanged when the network cannot run
    at that size (the page reports that on its own)."""
    try:
        return propagate_image(config, image_shape).suggested or config
    except ShapeError:
        return config


def with_image_shape(config: AEConfig, shape: tuple[int, int, int],
                     new_shape: tuple[int, int, int]) -> tuple[AEConfig, tuple[int, int, int], Optional[str]]:
    """(config, image shape, refusal) after the image size or channels change from `shape` to `new_shape`:
    a pixel AE's first and last channels follow the images; a feature AE keeps its channels (the backbone's),
    and its images must stay gray or RGB, else the channels are kept and the refusal says why."""
    c, h, w = new_shape
    refusal = None
    if config.input is not None and c not in (1, 3):
        refusal = f"Channels: the {config.input.backbone} backbone takes gray (1) or RGB (3) images, not {c}."
        c = shape[0]
    if config.input is None and c != config.in_channels:
        config = set_image_channels(config, c)
    return config, (c, h, w), refusal


# --- shape tables and totals -------------------------------------------------------------------

def shape_text(shape: Optional[tuple[int, ...]]) -> str:
    """(C, H, W) as `C×H×W`; empty for None."""
    return "×".join(map(str, shape)) if shape else ""


def layer_rows(report: ShapeReport) -> list[dict[str, Any]]:
    """One row per layer; `ok` is False for every layer of a stage that does not mirror the encoder.
    Kernel, stride and the paddings are text, blank where the layer has none (an activation, a dropout)."""
    ok = {s.name: s.ok for s in report.stages}

    def text(v: Any) -> str:
        return "" if v is None else ",".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v)

    return [{
        "layer": l.name, "stage": l.stage, "kind": l.kind, "in": shape_text(l.in_shape), "out": shape_text(l.out_shape),
        "kernel": text(l.kernel), "stride": text(l.stride), "padding": text(l.padding),
        "output_padding": text(l.output_padding or None),
        "params": l.params, "ok": ok[l.stage],
    } for l in report.layers]


def stage_rows(report: ShapeReport) -> list[dict[str, Any]]:
    """One row per stage: its output, the shape it must mirror, and the fix when it does not."""
    fixes = {p.stage: p.message.split(": ", 1)[-1] for p in report.problems}
    return [{"stage": s.name, "output": shape_text(s.out), "must mirror": shape_text(s.target),
             "ok": s.ok, "fix": fixes.get(s.name, "")} for s in report.stages]


def human(n: float) -> str:
    """A count with a k/M/G suffix: 1234567 -> '1.23 M'."""
    for div, unit in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:g}"


def ratio_text(x: float) -> str:
    """A compression factor as people read it: 1,024 rather than 1.02e+03; 3 digits below 100."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def summary_metrics(report: ShapeReport, image_hw: Optional[tuple[int, int]] = None) -> list[tuple[str, str, str]]:
    """(label, value, help) for the totals: parameters, MACs, compression, receptive field (in feature
    cells when the AE's input is smaller than the image `image_hw`)."""
    ratio = report.compression
    return [
        ("Parameters", human(report.params), f"{report.params:,} trainable weights and biases"),
        ("MACs / image", human(report.macs), f"{report.macs:,} multiply-accumulates for one forward pass"),
        ("Compression", f"1:{ratio_text(1 / ratio)}" if ratio < 1 else f"{ratio_text(ratio)}:1",
         f"latent {shape_text(report.latent)} holds {ratio:.3g} numbers per input number"),
        ("Receptive field", receptive_field_text(report, image_hw, short=True),
         f"{receptive_field_text(report, image_hw)}: the input pixels (or feature cells) along one side that one "
         "latent cell sees; defects much larger than this are hard to model"),
    ]


def identity_warning(report: ShapeReport, threshold: float = IDENTITY_RATIO) -> Optional[str]:
    """A warning when the latent is big enough to copy the input through, else None."""
    if report.compression < threshold:
        return None
    return (f"The latent {shape_text(report.latent)} keeps {report.compression:.0%} as many numbers as the input "
            f"{shape_text(report.input)} (warning from {threshold:.0%}). With that much room the autoencoder can "
            "learn the identity: it then reconstructs defects as well as good texture, the residual stays flat, "
            "and it finds no defects. Lower latent_size or add a block.")


def collapse_warning(report: ShapeReport) -> Optional[str]:
    """A warning when encoder stages (or the latent) after the first 1x1 map are 1x1 too, else None:
    a block on a single cell sees nothing new, and its receptive field outgrows the image."""
    flat = [s.name for s in report.stages if s.target is None and s.out[1:] == (1, 1)]
    if len(flat) < 2:
        return None
    return (f"{', '.join(flat)} are 1x1: the map has no space left after {flat[0]}, so the later blocks only add "
            f"weights (receptive field {report.receptive_field} px on a {report.input[1]}x{report.input[2]} "
            "input). Remove blocks, or give the model a larger input.")


def design_warnings(report: ShapeReport) -> list[str]:
    """The warnings on a design that mirrors but may not detect (`identity_warning`, `collapse_warning`): the
    Design page and `udd shapes` say the same ones."""
    return [w for w in (identity_warning(report), collapse_warning(report)) if w]


# --- the picture -------------------------------------------------------------------------------

def _role(name: str, ok: bool) -> str:
    if not ok:
        return "mismatch"
    if name == "input":
        return "input"
    if name == "latent":
        return "latent"
    return "encoder" if name.startswith("enc") else "decoder"


def block_sizes(report: ShapeReport) -> list[tuple[str, float, float]]:
    """(name, width, height) of each picture block, input first: height ~ sqrt(H), width ~ sqrt(C).

    Square roots keep a 512-pixel input and a 4-pixel latent (or 1 and 512 channels) both visible.
    """
    blocks = [("input", report.input)] + [(s.name, s.out) for s in report.stages]
    h_max = max(b[1][1] for b in blocks)
    c_max = max(b[1][0] for b in blocks)
    return [(name, 0.35 + 1.4 * math.sqrt(c / c_max), 0.6 + 9.4 * math.sqrt(h / h_max)) for name, (c, h, _) in blocks]


def architecture_figure(report: ShapeReport) -> go.Figure:
    """Each stage as a bar centred on y=0: encoder left to right, the latent, then the decoder.

    One bar trace per role (input, encoder, latent, decoder, mismatch) so the legend explains the
    colours; hovering a block shows its shape and, for decoder stages, the shape it must mirror.
    """
    shapes = {"input": (report.input, None, True)}
    shapes.update({s.name: (s.out, s.target, s.ok) for s in report.stages})
    gap = 0.45
    x = 0.0
    traces: dict[str, dict[str, list]] = {}
    annotations = []
    for name, width, height in block_sizes(report):
        out, target, ok = shapes[name]
        role = _role(name, ok)
        t = traces.setdefault(role, {"x": [], "width": [], "y": [], "base": [], "hover": [], "name": []})
        hover = f"<b>{name}</b><br>C×H×W = {shape_text(out)}"
        if target is not None:
            hover += f"<br>must mirror {shape_text(target)}" + ("" if ok else " <b>✗ mismatch</b>")
        t["x"].append(x + width / 2)
        t["width"].append(width)
        t["y"].append(height)
        t["base"].append(-height / 2)
        t["hover"].append(hover)
        t["name"].append(name)
        annotations.append(dict(x=x + width / 2, y=-5.6, text=name, showarrow=False, font=dict(size=11)))
        annotations.append(dict(x=x + width / 2, y=height / 2 + 0.5, text=f"{out[1]}×{out[2]}", showarrow=False,
                                font=dict(size=10, color="#555")))
        x += width + gap
    fig = go.Figure()
    for role in COLORS:
        if role not in traces:
            continue
        t = traces[role]
        fig.add_trace(go.Bar(
            x=t["x"], y=t["y"], base=t["base"], width=t["width"], name=role, customdata=t["name"],
            hovertext=t["hover"], hovertemplate="%{hovertext}<extra></extra>",
            marker=dict(color=COLORS[role], line=dict(color="#222" if role == "latent" else "white", width=2),
                        pattern=dict(shape="/" if role == "latent" else "")),
        ))
    fig.update_layout(
        barmode="overlay", height=330, margin=dict(l=10, r=10, t=30, b=10), annotations=annotations,
        xaxis=dict(visible=False, range=[-gap, x]), yaxis=dict(visible=False, range=[-6.2, 6.0]),
        legend=dict(orientation="h", y=1.08, x=0), plot_bgcolor="rgba(0,0,0,0)",
        title=dict(text="height ∝ √H, width ∝ √channels", font=dict(size=12), x=1, xanchor="right"),
    )
    return fig


def form_values(config: Mapping[str, Any], shape: tuple[int, int, int]) -> dict[str, Any]:
    """The Design form's fields for a config dict and an input shape (C, H, W): the JSON text, the latent's
    size, kernel and output paddings, the block count, the shape, whether the input is backbone features,
    and the features' backbone, layers and pool (the defaults' for pixels)."""
    c, h, w = shape
    pad = config["latent_opad"]
    ph, pw = (pad, pad) if isinstance(pad, int) else pad
    spec = parse_input(config.get("input"))
    shown = spec or FeatureInput()
    return {"json": config_text(config), "latent_size": config["latent_size"], "latent_ker": config["latent_ker"],
            "lopad_h": ph, "lopad_w": pw, "blocks": len(config["block_ker"]), "c": c, "h": h, "w": w,
            "features": spec is not None, "backbone": shown.backbone, "layers": list(shown.layers),
            "pool": shown.pool}
