"""Analytic shape propagation: every layer's shape, params and MACs from (config, input shape).

No tensor is ever built, so this is cheap enough to rerun on every keystroke in the Design page.
The layer list walks the same modules, in the same order, as `model.AutoEncoder`, and names each
layer by its module path there (`encoder.0.2`), so a test can hold the two against each other.

Height and width never interact in these layers, so each is propagated and solved on its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .config import AEConfig, Pad, pad_pair, parse_config

Shape = tuple[int, int, int]  # (C, H, W)
SEARCH = 512  # how far (in pixels) to look for the nearest input size that works


class ShapeError(ValueError):
    """The network cannot run at this input size; the message names the stage and nearby sizes.

    `suggested` holds a config that does run when only the output paddings are to blame.
    """

    def __init__(self, message: str, suggested: Optional[AEConfig] = None):
        super().__init__(message)
        self.suggested = suggested


@dataclass(frozen=True)
class Layer:
    """One module of the model with its shapes."""

    name: str  # module path in `AutoEncoder`, e.g. "encoder.0.2"
    stage: str  # enc1..encN, latent, latent_up, dec1..decN
    kind: str  # Conv2d, ConvTranspose2d, LeakyReLU or Dropout
    in_shape: Shape
    out_shape: Shape
    kernel: Optional[int] = None
    stride: Optional[int] = None
    padding: Optional[int] = None
    output_padding: Optional[tuple[int, int]] = None
    params: int = 0
    macs: int = 0  # multiply-accumulates for one image


@dataclass(frozen=True)
class Stage:
    """A stage's output, and for decoder stages the encoder shape it has to mirror."""

    name: str
    out: Shape
    target: Optional[Shape] = None  # None for encoder stages and the latent

    @property
    def ok(self) -> bool:
        return self.target is None or self.target == self.out


@dataclass(frozen=True)
class Problem:
    """A decoder stage that does not mirror the encoder, with the config field that controls it."""

    stage: str
    field: str
    message: str


@dataclass(frozen=True)
class ShapeReport:
    """Everything `propagate` finds out about a config at one input shape."""

    input: Shape
    output: Shape
    layers: list[Layer]
    stages: list[Stage]
    problems: list[Problem]
    suggested: Optional[AEConfig]  # the config with the output paddings that fix every problem
    params: int
    macs: int
    latent: Shape
    compression: float  # latent elements / input elements
    receptive_field: int  # input pixels (per side) that one latent cell sees
    nearest_inputs: list[Shape] = field(default_factory=list)  # when padding cannot fix it

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """The JSON object `udd shapes --json` prints."""
        return {
            "input": list(self.input),
            "output": list(self.output),
            "ok": self.ok,
            "stages": [{"name": s.name, "out": list(s.out), "target": list(s.target) if s.target else None,
                        "ok": s.ok} for s in self.stages],
            "layers": [
                {"name": l.name, "stage": l.stage, "kind": l.kind, "in": list(l.in_shape), "out": list(l.out_shape),
                 "kernel": l.kernel, "stride": l.stride, "padding": l.padding,
                 "output_padding": list(l.output_padding) if l.output_padding else None,
                 "params": l.params, "macs": l.macs}
                for l in self.layers
            ],
            "problems": [{"stage": p.stage, "field": p.field, "message": p.message} for p in self.problems],
            "suggested_config": self.suggested.to_dict() if self.suggested else None,
            "nearest_inputs": [list(s) for s in self.nearest_inputs],
            "params": self.params,
            "macs": self.macs,
            "latent": list(self.latent),
            "compression": self.compression,
            "receptive_field": self.receptive_field,
        }


# --- one-dimensional arithmetic (PyTorch's formulas, dilation 1) ------------------------------

def conv_out(n: int, k: int, s: int) -> int:
    """Conv2d output length with padding k // 2."""
    return (n + 2 * (k // 2) - k) // s + 1


def convt_out(n: int, k: int, s: int, opad: int = 0) -> int:
    """ConvTranspose2d output length with padding k // 2."""
    return (n - 1) * s - 2 * (k // 2) + k + opad


def _pad_fields(c: AEConfig) -> list[tuple[str, str, Pad]]:
    """(stage, field, value) of every decoder stage's output padding, in order."""
    return [("latent_up", "latent_opad", c.latent_opad)] + [
        (f"dec{i + 1}", f"out_pad[{i}]", p) for i, p in enumerate(c.out_pad)
    ]


def _decoder_kernels(c: AEConfig) -> list[int]:
    return [c.block_ker[-1]] + list(c.block_ker[::-1])


def _encoder_sizes(c: AEConfig, n: int) -> list[int]:
    """Length after each encoder block and then the latent conv, along one axis."""
    out = []
    for k in c.block_ker:
        n = conv_out(conv_out(n, k, 1), k, 2)
        out.append(n)
    out.append(conv_out(n, c.latent_ker, 2))
    return out


def _decoder_step(n: int, k: int, opad: int, with_block_conv: bool) -> int:
    n = convt_out(n, k, 2, opad)
    return convt_out(n, k, 1) if with_block_conv else n


def _solve_axis(c: AEConfig, n: int) -> Optional[list[int]]:
    """Output paddings (one per decoder stage) that mirror the encoder along one axis, or None."""
    enc = _encoder_sizes(c, n)
    if min(enc) < 1:
        return None
    targets = enc[-2::-1] + [n]  # latent_up mirrors encN, dec i mirrors enc(N-i), decN the input
    cur, pads = enc[-1], []
    for stage, (k, target) in enumerate(zip(_decoder_kernels(c), targets)):
        base = _decoder_step(cur, k, 0, stage > 0)
        if target - base not in (0, 1) or base < 1:
            return None
        pads.append(target - base)
        cur = target
    return pads


def _nearest(c: AEConfig, n: int) -> tuple[Optional[int], Optional[int]]:
    """The nearest lengths below and above n at which the network runs and mirrors."""
    below = next((m for m in range(n - 1, 0, -1) if n - m <= SEARCH and _solve_axis(c, m) is not None), None)
    above = next((m for m in range(n + 1, n + SEARCH) if _solve_axis(c, m) is not None), None)
    return below, above


def nearest_inputs(config: AEConfig, input_shape: Shape) -> list[Shape]:
    """Input shapes close to `input_shape` for which some output padding makes the decoder mirror."""
    ch, h, w = input_shape
    options = []
    for axis_n in (h, w):
        if _solve_axis(config, axis_n) is not None:
            options.append((axis_n, axis_n))
        else:
            b, a = _nearest(config, axis_n)
            options.append((b if b is not None else a, a if a is not None else b))
    shapes = {(ch, options[0][0], options[1][0]), (ch, options[0][1], options[1][1])}
    return sorted(s for s in shapes if None not in s)


def _fmt(s: Shape) -> str:
    return "x".join(map(str, s))


# --- the propagation -------------------------------------------------------------------------

def propagate(config: Any, input_shape: tuple[int, int, int]) -> ShapeReport:
    """Shapes, params and MACs of every layer for one (C, H, W) input, and the padding fixes.

    Raises `ConfigError` for an invalid config and `ShapeError` when the network cannot run at
    this input size (a layer would produce an empty tensor, or the channels differ).
    """
    c = parse_config(config)
    if len(input_shape) != 3 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in input_shape):
        raise ShapeError(f"input shape: expected three positive integers C,H,W, got {tuple(input_shape)}")
    inp: Shape = tuple(input_shape)  # type: ignore[assignment]
    if inp[0] != c.in_channels:
        raise ShapeError(f"input shape: {inp[0]} channels, but block_size_in[0][0] = {c.in_channels}")

    layers: list[Layer] = []
    shape = inp

    def conv(name: str, stage: str, cout: int, k: int, s: int) -> None:
        nonlocal shape
        cin, h, w = shape
        out = (cout, conv_out(h, k, s), conv_out(w, k, s))
        if min(out[1:]) < 1:
            raise _too_small(c, inp, stage, out)
        layers.append(Layer(name, stage, "Conv2d", shape, out, k, s, k // 2, None,
                            cin * cout * k * k + cout, cin * cout * k * k * out[1] * out[2]))
        shape = out

    def convt(name: str, stage: str, cout: int, k: int, s: int, opad: Pad = 0) -> None:
        nonlocal shape
        cin, h, w = shape
        oph, opw = pad_pair(opad)
        out = (cout, convt_out(h, k, s, oph), convt_out(w, k, s, opw))
        if min(out[1:]) < 1:
            raise _too_small(c, inp, stage, out)
        # Each input pixel scatters a k x k x cout patch: MACs follow the input size.
        layers.append(Layer(name, stage, "ConvTranspose2d", shape, out, k, s, k // 2, (oph, opw),
                            cin * cout * k * k + cout, cin * cout * k * k * h * w))
        shape = out

    def plain(name: str, stage: str, kind: str) -> None:
        layers.append(Layer(name, stage, kind, shape, shape))

    stages: list[Stage] = []
    for i, (k, bf) in enumerate(zip(c.block_ker, c.block_size_in)):
        st, p = f"enc{i + 1}", f"encoder.{i}"
        conv(f"{p}.0", st, bf[1], k, 1)
        plain(f"{p}.1", st, "LeakyReLU")
        conv(f"{p}.2", st, bf[2], k, 2)
        plain(f"{p}.3", st, "Dropout")
        plain(f"{p}.4", st, "LeakyReLU")
        stages.append(Stage(st, shape))
    conv(f"encoder.{c.n_blocks}", "latent", c.latent_size, c.latent_ker, 2)
    latent = shape
    stages.append(Stage("latent", shape))

    enc_outs = [s.out for s in stages[:-1]]
    targets = [(c.block_size_out[0][0],) + enc_outs[-1][1:]]
    targets += [(bf[2],) + enc_outs[-2 - i][1:] for i, bf in enumerate(c.block_size_out[:-1])]
    targets.append(inp)

    convt("decoder.0", "latent_up", c.block_size_out[0][0], c.block_ker[-1], 2, c.latent_opad)
    stages.append(Stage("latent_up", shape, targets[0]))
    for i, (k, bf) in enumerate(zip(c.block_ker[::-1], c.block_size_out)):
        st, p = f"dec{i + 1}", f"decoder.{i + 1}"
        convt(f"{p}.0", st, bf[1], k, 2, c.out_pad[i])
        plain(f"{p}.1", st, "Dropout")
        plain(f"{p}.2", st, "LeakyReLU")
        convt(f"{p}.3", st, bf[2], k, 1)
        if i + 1 < c.n_blocks:  # the last block has no activation: outputs are unbounded
            plain(f"{p}.4", st, "LeakyReLU")
        stages.append(Stage(st, shape, targets[i + 1]))

    problems, suggested, nearest = _diagnose(c, inp, stages)
    params = sum(l.params for l in layers)
    return ShapeReport(
        input=inp, output=shape, layers=layers, stages=stages, problems=problems, suggested=suggested,
        params=params, macs=sum(l.macs for l in layers), latent=latent,
        compression=(latent[0] * latent[1] * latent[2]) / (inp[0] * inp[1] * inp[2]),
        receptive_field=receptive_field(c), nearest_inputs=nearest,
    )


def _too_small(c: AEConfig, inp: Shape, stage: str, out: Shape) -> ShapeError:
    what = f"input {_fmt(inp)} is too small for this network: {stage} would output {_fmt(out)}"
    sol_h, sol_w = _solve_axis(c, inp[1]), _solve_axis(c, inp[2])
    if sol_h is not None and sol_w is not None:  # only the paddings are wrong: say which to use
        pads = [(h, w) for h, w in zip(sol_h, sol_w)]
        fixed = c.with_padding(pads[0], tuple(pads[1:]))
        return ShapeError(f"{what}; these output paddings make it run: latent_opad = {list(pads[0])}, "
                          f"out_pad = {[list(p) for p in pads[1:]]}", fixed)
    near = nearest_inputs(c, inp)
    hint = f"; nearest input sizes that work: {', '.join(map(_fmt, near))}" if near else ""
    return ShapeError(what + hint)


def _diagnose(c: AEConfig, inp: Shape, stages: list[Stage]) -> tuple[list[Problem], Optional[AEConfig], list[Shape]]:
    """Name the decoder stages that do not mirror, and solve the paddings that fix them."""
    bad = [s for s in stages if not s.ok]
    if not bad:
        return [], None, []
    fields = {stage: (name, value) for stage, name, value in _pad_fields(c)}
    sol_h, sol_w = _solve_axis(c, inp[1]), _solve_axis(c, inp[2])
    if sol_h is None or sol_w is None:
        near = nearest_inputs(c, inp)
        hint = (f"output padding cannot fix it at {_fmt(inp)}; nearest input sizes that work: "
                f"{', '.join(map(_fmt, near))}") if near else "output padding cannot fix it at this input size"
        problems = [Problem(s.name, fields[s.name][0],
                            f"{s.name} outputs {_fmt(s.out)} but must mirror {_fmt(s.target)}: {hint}") for s in bad]
        return problems, None, near

    def as_pad(old: Pad, h: int, w: int) -> Pad:
        return h if isinstance(old, int) and h == w else (h, w)

    new = [as_pad(v, ph, pw) for (_, _, v), ph, pw in zip(_pad_fields(c), sol_h, sol_w)]
    suggested = c.with_padding(new[0], tuple(new[1:]))
    by_stage = dict(zip([s for s, _, _ in _pad_fields(c)], new))

    def fix(s: Stage) -> str:
        name, old = fields[s.name]
        if pad_pair(old) == pad_pair(by_stage[s.name]):
            return f"{name} is right; fixing the stages before it fixes this one"
        return f"set {name} = {list(pad_pair(by_stage[s.name]))}"

    problems = [Problem(s.name, fields[s.name][0],
                        f"{s.name} outputs {_fmt(s.out)} but must mirror {_fmt(s.target)}: {fix(s)}") for s in bad]
    return problems, suggested, []


def receptive_field_text(report: ShapeReport, image_hw: Optional[tuple[int, int]] = None, short: bool = False) -> str:
    """The receptive field in its unit: image pixels, or, for an AE on backbone features (its input
    smaller than the image `image_hw`), cells of the feature grid with their size in pixels; `short` for a
    narrow place, such as the Design page's metric (QA sweeps 17 and 18: "45 feature c…", then "9 cells …" at
    1100 px, cut there)."""
    rf = report.receptive_field
    if image_hw is None or report.input[1] >= image_hw[0]:
        return f"{rf} px"
    stride = image_hw[0] // report.input[1]  # (H / h): the feature grid's stride
    if short:  # the pixels, which a defect's size is measured in; the cells are in the long form
        return f"≈ {rf * stride} px"
    return f"{rf} feature cells (stride {stride}: about {rf * stride} px)"


def receptive_field(c: AEConfig) -> int:
    """Input pixels along one side that influence one latent cell (ignoring border clipping)."""
    rf, jump = 1, 1
    for k in c.block_ker:
        for stride in (1, 2):
            rf += (k - 1) * jump
            jump *= stride
    return rf + (c.latent_ker - 1) * jump
