"""The autoencoder's config: one frozen dataclass, parsed safely from JSON or the reference format.

The reference package (`defect_detection` 0.4.4) writes its config as a printed Python dict
(`AE_config.txt`, single quotes and tuples) and reads it back with Python's eval. We read both that
format and JSON with literal parsers only, so a config file can never run code.
"""
from __future__ import annotations

import ast
import difflib
import json
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

from .feature_input import FeatureInput, parse_input

Pad = Union[int, tuple[int, int]]

FIELDS = (
    "block_ker", "drop", "block_size_in", "block_size_out",
    "latent_size", "latent_ker", "latent_opad", "out_pad",
)
# Optional fields of our own, absent from the reference format: (name, default, allowed values).
# "output": what the last decoder layer gives. "linear" (the reference) is the raw value; "softmax"
# turns the channels into probabilities that sum to one per pixel, for one-hot inputs such as wafer
# maps trained with a cross-entropy loss. A config without the field is exactly the reference model.
OUTPUTS = ("linear", "softmax")

OPTIONAL_FIELDS = ("input",)  # udd's own: what the AE takes in (feature_input.py); absent = pixels
# The reference docs also spell latent_opad this way; both are accepted on input.
ALIASES = {"laten_opad": "latent_opad"}
MAX_TEXT = 1_000_000  # bytes: a config is a few hundred; refuse anything that could choke the parser
# The app's config uploaders take files up to this many MB, so that a larger wrong file reaches the parser and
# gets its one-line refusal (above MAX_TEXT) instead of only the uploader's red icon.
CONFIG_UPLOAD_MB = 20
# Beyond these a typo, not a design: building such a model would exhaust memory before saying why.
MAX_FEATURES, MAX_KERNEL, MAX_BLOCKS = 16_384, 255, 32


class ConfigError(ValueError):
    """An invalid config; the message is one line that names the field and the reason."""

    def __init__(self, field_name: str, reason: str):
        self.field = field_name
        super().__init__(f"{field_name}: {reason}")


@dataclass(frozen=True)
class AEConfig:
    """The architecture of one autoencoder, field for field the reference package's config dict."""

    block_ker: tuple[int, ...]  # kernel size of each encoder block; the decoder uses them reversed
    drop: tuple[float, ...]  # dropout after each block's stride-2 conv, in [0, 1); reversed in the decoder
    block_size_in: tuple[tuple[int, int, int], ...]  # (in, mid, out) features of each encoder block
    block_size_out: tuple[tuple[int, int, int], ...]  # (in, mid, out) features of each decoder block
    latent_size: int  # channels of the latent code
    latent_ker: int  # kernel of the stride-2 conv that makes the latent code
    latent_opad: Pad  # output_padding of the first stride-2 transposed conv (int, or (h, w))
    out_pad: tuple[Pad, ...]  # output_padding of each decoder block's stride-2 transposed conv
    output: str = "linear"  # "linear" (the reference) or "softmax" over the channels; see OUTPUTS
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)  # unknown keys, kept verbatim
    input: Optional[FeatureInput] = None  # None: the AE takes pixels; else the backbone features it reconstructs

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def n_blocks(self) -> int:
        """Number of encoder (and decoder) blocks."""
        return len(self.block_ker)

    @property
    def in_channels(self) -> int:
        """Channels of the images the model takes (and gives back)."""
        return self.block_size_in[0][0]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with the reference package's keys, unknown keys last."""
        d: dict[str, Any] = {
            "block_ker": list(self.block_ker),
            "drop": list(self.drop),
            "block_size_in": [list(b) for b in self.block_size_in],
            "block_size_out": [list(b) for b in self.block_size_out],
            "latent_size": self.latent_size,
            "latent_ker": self.latent_ker,
            "latent_opad": _pad_out(self.latent_opad),
            "out_pad": [_pad_out(p) for p in self.out_pad],
        }
        if self.output != "linear":  # written only when set: a reference config stays the reference format
            d["output"] = self.output

        if self.input is not None:  # absent for pixels: a pixel config stays the reference's dict
            d["input"] = self.input.to_dict()
        d.update(self.extra)
        return d

    def to_json(self) -> str:
        """Pretty JSON text of `to_dict()`."""
        return json.dumps(self.to_dict(), indent=2)

    def with_padding(self, latent_opad: Pad, out_pad: tuple[Pad, ...]) -> "AEConfig":
        """A copy with other output paddings (what the shape solver suggests)."""
        return replace(self, latent_opad=latent_opad, out_pad=tuple(out_pad))


def pad_pair(p: Pad) -> tuple[int, int]:
    """An output padding as (h, w)."""
    return (p, p) if isinstance(p, int) else (p[0], p[1])


def _pad_out(p: Pad) -> Any:
    return p if isinstance(p, int) else list(p)


# --- parsing ---------------------------------------------------------------------------------

def parse_config(source: Union[str, Mapping[str, Any], AEConfig]) -> AEConfig:
    """Build a validated `AEConfig` from JSON text, reference-format text, a dict, or a config.

    Raises `ConfigError` (a `ValueError`) with one line naming the field. Unknown keys are kept
    in `extra` and reported with a `UserWarning`.
    """
    if isinstance(source, AEConfig):
        return source
    if isinstance(source, (str, bytes)):
        source = _parse_text(source)
    if not isinstance(source, Mapping):
        raise ConfigError("config", f"expected a dict of fields, got {type(source).__name__}")
    raw = dict(source)
    for alias, name in ALIASES.items():
        if alias in raw:
            if name in raw:
                raise ConfigError(name, f"given twice, as {name!r} and as {alias!r}")
            raw[name] = raw.pop(alias)
    missing = [f for f in FIELDS if f not in raw]
    if missing:
        unknown = [str(k) for k in raw if k not in FIELDS and k not in OPTIONAL_FIELDS]
        typo = difflib.get_close_matches(missing[0], unknown, n=1, cutoff=0.75)  # "latnet_size": a typo, said
        also = f" (also missing: {', '.join(missing[1:])})" if missing[1:] else ""
        raise ConfigError(missing[0], f"missing field{also}"
                          + (f"; the config has {typo[0]!r}: a misspelling of it?" if typo else ""))
    given = set(raw)
    output = raw.pop("output", "linear")
    if output not in OUTPUTS:
        raise ConfigError("output", f"must be one of {', '.join(map(repr, OUTPUTS))}, got {output!r}"[:200])
    extra = {k: v for k, v in raw.items() if k not in FIELDS and k not in OPTIONAL_FIELDS}
    if extra:  # a misspelt optional field ("ouput") is named as such (QA sweep 19a), the others listed
        absent = [f for f in ("output", *OPTIONAL_FIELDS) if f not in given]
        said = []
        for k in map(str, extra):
            typo = difflib.get_close_matches(k, absent, n=1, cutoff=0.75)
            said.append(k + (f" (a misspelling of {typo[0]!r}?)" if typo else ""))
        warnings.warn(f"config: unknown keys kept but unused: {', '.join(said)}", UserWarning, stacklevel=2)
    n = _int_list(raw["block_ker"], "block_ker")
    return AEConfig(
        block_ker=n,
        drop=_float_list(raw["drop"], "drop"),
        block_size_in=_triples(raw["block_size_in"], "block_size_in"),
        block_size_out=_triples(raw["block_size_out"], "block_size_out"),
        latent_size=_int(raw["latent_size"], "latent_size"),
        latent_ker=_int(raw["latent_ker"], "latent_ker"),
        latent_opad=_pad(raw["latent_opad"], "latent_opad"),
        out_pad=tuple(_pad(p, f"out_pad[{i}]") for i, p in enumerate(_seq(raw["out_pad"], "out_pad"))),
        output=output,
        extra={str(k): v for k, v in extra.items()},
        input=_input(raw.get("input")),
    )


def noting_warnings(read: Callable[[], AEConfig]) -> tuple[AEConfig, list[str]]:
    """`read()` (e.g. `lambda: load_config(path)`) and the messages of the warnings it gave (unknown
    keys kept), for a caller that shows them its own way: `udd` on stderr, the Design page on screen."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = read()
    return config, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def config_text(d: Mapping[str, Any]) -> str:
    """A config dict as JSON with one field per line: short enough to read at a glance, still plain JSON."""
    return "{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in d.items()) + "\n}"


def load_config(path: Union[str, Path]) -> AEConfig:
    """Read a config file (JSON or the reference's `AE_config.txt`); errors name the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(str(path), f"cannot read ({e.strerror or e})") from None
    try:
        return parse_config(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e.field}", str(e).split(": ", 1)[1]) from None


def _parse_text(text: Union[str, bytes]) -> Any:
    if len(text) > MAX_TEXT:
        raise ConfigError("config", f"text is {len(text)} bytes, more than the {MAX_TEXT} allowed")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ConfigError("config", "not UTF-8 text") from None
    if not text.strip():
        raise ConfigError("config", "empty text")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        json_error = f"{e.msg} at line {e.lineno}, column {e.colno}"
    except ValueError as e:
        if "integer string conversion" in str(e):  # Python's own hint (set_int_max_str_digits) is no use here
            raise ConfigError("config", "holds an integer of more than 4300 digits") from None
        json_error = str(e).splitlines()[0]
    except RecursionError:
        raise ConfigError("config", "nested too deeply") from None
    try:
        # literal_eval accepts only literals: names, calls and attribute access are refused.
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        if isinstance(e, SyntaxError):  # its str() ends in "(<unknown>, line 1)": the parser's, not the user's
            reason = f"{e.msg} at line {e.lineno}" if e.lineno else str(e.msg)
        else:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "malformed node" in reason:  # literal_eval met a name, call or operator: a typo, or code
            reason = _not_a_literal(text.strip())
        raise ConfigError("config", f"not valid JSON ({json_error}), nor a Python literal dict ({reason})") from None


_LITERAL_NODES = (ast.Expression, ast.Constant, ast.Dict, ast.List, ast.Tuple, ast.Set, ast.UnaryOp, ast.USub,
                  ast.UAdd, ast.Load)


def _not_a_literal(text: str) -> str:
    """Where literal_eval stopped: the first piece of `text` that is not a literal value, by position
    (`oops` for `{"drop": oops}`, a misspelt word or code alike)."""
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return "only literal values are allowed"
    node = next((n for n in ast.walk(tree) if not isinstance(n, _LITERAL_NODES)), None)
    if node is None or not hasattr(node, "lineno"):
        return "only literal values are allowed"
    piece = (ast.get_source_segment(text, node) or type(node).__name__).splitlines()[0][:40]
    return f"`{piece}` at line {node.lineno}, column {node.col_offset + 1} is not a number, string, list or dict"


def _input(v: Any) -> Optional[FeatureInput]:
    try:
        return parse_input(v)
    except ValueError as e:  # "input.layers[1]: ..." -> ConfigError with that field name
        name, _, reason = str(e).partition(": ")
        raise ConfigError(name, reason) from None


def _int(v: Any, name: str) -> int:
    # bool is an int subclass; `True` as a size is a typo, not a 1.
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            return int(v)
        raise ConfigError(name, f"expected an integer, got {v!r}"[:200])
    return v


def _seq(v: Any, name: str) -> tuple:
    if not isinstance(v, (list, tuple)):
        raise ConfigError(name, f"expected a list, got {type(v).__name__}")
    return tuple(v)


def _int_list(v: Any, name: str) -> tuple[int, ...]:
    return tuple(_int(x, f"{name}[{i}]") for i, x in enumerate(_seq(v, name)))


def _float_list(v: Any, name: str) -> tuple[float, ...]:
    out = []
    for i, x in enumerate(_seq(v, name)):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise ConfigError(f"{name}[{i}]", f"expected a number, got {x!r}"[:200])
        out.append(float(x))
    return tuple(out)


def _triples(v: Any, name: str) -> tuple[tuple[int, int, int], ...]:
    out = []
    for i, b in enumerate(_seq(v, name)):
        t = _int_list(b, f"{name}[{i}]")
        if len(t) != 3:
            raise ConfigError(f"{name}[{i}]", f"expected 3 feature counts (in, mid, out), got {len(t)}")
        out.append(t)
    return tuple(out)


def _pad(v: Any, name: str) -> Pad:
    if isinstance(v, (list, tuple)):
        t = _int_list(v, name)
        if len(t) != 2:
            raise ConfigError(name, f"expected an int or a pair (h, w), got {len(t)} values")
        return (t[0], t[1])
    return _int(v, name)


# --- validation ------------------------------------------------------------------------------

def _validate(c: AEConfig) -> None:
    if c.output not in OUTPUTS:
        raise ConfigError("output", f"must be one of {', '.join(map(repr, OUTPUTS))}, got {c.output!r}"[:200])

    if c.input is not None and not isinstance(c.input, FeatureInput):
        raise ConfigError("input", f"expected a FeatureInput or None, got {type(c.input).__name__}")
    n = len(c.block_ker)
    if n == 0:
        raise ConfigError("block_ker", "needs at least one block")
    for name in ("drop", "block_size_in", "block_size_out", "out_pad"):
        if len(getattr(c, name)) != n:
            raise ConfigError(name, f"has {len(getattr(c, name))} entries but block_ker has {n}")
    if n > MAX_BLOCKS:
        raise ConfigError("block_ker", f"{n} blocks is more than the {MAX_BLOCKS} supported")
    for name, k in [(f"block_ker[{i}]", k) for i, k in enumerate(c.block_ker)] + [("latent_ker", c.latent_ker)]:
        if not 0 < k <= MAX_KERNEL:
            raise ConfigError(name, f"kernel size must be between 1 and {MAX_KERNEL}, got {k}")
    if not 0 < c.latent_size <= MAX_FEATURES:
        raise ConfigError("latent_size", f"must be between 1 and {MAX_FEATURES}, got {c.latent_size}")
    for i, p in enumerate(c.drop):
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"drop[{i}]", f"dropout must be in [0, 1), got {p}")
    for name in ("block_size_in", "block_size_out"):
        blocks = getattr(c, name)
        for i, b in enumerate(blocks):
            for j, f in enumerate(b):
                if not 0 < f <= MAX_FEATURES:
                    raise ConfigError(f"{name}[{i}][{j}]", f"feature count must be between 1 and {MAX_FEATURES}, got {f}")
            if i + 1 < n and b[2] != blocks[i + 1][0]:
                raise ConfigError(
                    f"{name}[{i + 1}][0]",
                    f"is {blocks[i + 1][0]} but must equal {name}[{i}][2] = {b[2]} (features must chain)",
                )
    if c.block_size_out[-1][2] != c.block_size_in[0][0]:
        raise ConfigError(
            f"block_size_out[{n - 1}][2]",
            f"output channels {c.block_size_out[-1][2]} must equal the input channels "
            f"block_size_in[0][0] = {c.block_size_in[0][0]}",
        )
    if c.output == "softmax" and c.in_channels < 2:
        raise ConfigError("output", "'softmax' needs at least 2 channels (one per value, e.g. a wafer map's 3)")
    for name, p in [("latent_opad", c.latent_opad)] + [(f"out_pad[{i}]", p) for i, p in enumerate(c.out_pad)]:
        for v in pad_pair(p):
            if v not in (0, 1):
                raise ConfigError(name, f"output padding must be 0 or 1 (smaller than the stride 2), got {v}")
