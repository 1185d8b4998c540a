"""The values each numeric option of the `udd` command accepts, and the one check of them.

argparse turns `--smooth 1e308` into a float without complaint; later arithmetic then overflows
(a kernel of 1e308 pixels) into a traceback. Every option is checked here, right after parsing,
against a closed range: NaN, infinities and huge-but-finite numbers all get the same one-line
refusal that names the option. `udd train`'s settings are checked by `TrainSettings` instead (the
app uses the same check), with the message renamed to the option in cli_train.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class NumberRange:
    """A numeric option (argparse ``dest`` and the flag the user typed) and its allowed values."""

    dest: str  # the argparse attribute
    flag: str  # as typed on the command line, for the message
    integer: bool  # an int option (argparse type=int) or a float one
    lo: float  # smallest allowed value
    hi: float  # largest allowed value
    lo_open: bool = False  # lo itself is not allowed: (lo, hi]

    def refusal(self, value) -> str | None:
        """None when ``value`` is allowed, else the one-line message."""
        above = self.lo < value if self.lo_open else self.lo <= value  # False for NaN
        if above and value <= self.hi:
            return None
        kind = "an integer" if self.integer else "a number"
        # Every digit that counts ("got 100.0001", not a rounded "got 100" that looks allowed: QA sweep 12), and
        # "--coreset 0" is "got 0", not "0.0".
        shown = value
        if isinstance(value, float):  # short where that is exact ("-1e+10", not "-10000000000")
            shown = f"{value:g}" if float(f"{value:g}") == value or value != value else repr(value).removesuffix(".0")
        lo, hi = (f"{int(self.lo)}", f"{int(self.hi)}") if self.integer else (f"{self.lo:g}", f"{self.hi:g}")  # 2^63-1
        return f"{self.flag}: must be {kind} in {'(' if self.lo_open else '['}{lo}, {hi}], got {shown}"


# Bounds are far beyond any sensible value but small enough that nothing downstream overflows.
SEED_MAX = 2**63 - 1  # numpy and torch take 64-bit seeds
NUMERIC_OPTIONS: dict[str, tuple[NumberRange, ...]] = {
    "score": (
        NumberRange("topk", "--topk", False, 0, 100, lo_open=True),  # a percentage of the pixels
        NumberRange("smooth", "--smooth", False, 0, 100),  # px; the kernel is 6 sigma wide
        NumberRange("border", "--border", True, 0, 100_000),  # px; the image size bounds it further
        NumberRange("threshold", "--threshold", False, -1e9, 1e9),  # image scores are residual means
        NumberRange("target_fpr", "--target-fpr", False, 0, 1),
        NumberRange("batch_size", "--batch-size", True, 1, 1_000_000),
    ),
    "train": (
        NumberRange("coreset", "--coreset", False, 0, 1, lo_open=True),  # a share of the patches
        NumberRange("k", "--k", True, 1, 1_000_000),
    ),
    "generate": (
        NumberRange("sigma", "--sigma", False, 0, 1e6),  # float32 latents stay finite through the decoder
        NumberRange("n", "-n", True, 1, 10_000),  # generation.MAX_SAMPLES (a test holds them equal)
        NumberRange("seed", "--seed", True, 0, SEED_MAX),
        NumberRange("sources", "--sources", True, 1, 10_000),  # at most -n, checked by udd generate
    ),
    "export": (
        NumberRange("opset", "--opset", True, 13, 20),  # export.OPSETS (a test holds them equal)
    ),
}


def check_numbers(args: argparse.Namespace) -> str | None:
    """The first refusal among the parsed numeric options of ``args.command``, or None if all are allowed."""
    for r in NUMERIC_OPTIONS.get(args.command, ()):
        value = getattr(args, r.dest, None)
        if value is not None and (message := r.refusal(value)):
            return message
    return None

