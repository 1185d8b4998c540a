"""What `udd train`'s options become: the run's TrainSettings and the method's options, each refusal
naming the option as typed ("--batch-size: ...", "--option k: ..."), and the options a resume or a
one-pass method cannot take. `cli_train` runs the command with them.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

from .cli import UsageError, parse_ints
from .settings import TrainSettings, training_presets
from .training_data import check_train_on


def refuse_train_on(labels, train_on: str, field: str = "--train-on") -> str:
    """training_data.check_train_on (train_on as the data spells it), its refusals named by `field`: the option
    the user typed, or on a resume the run's own setting (the user typed none)."""
    try:
        return check_train_on(labels, train_on)
    except ValueError as e:
        msg = str(e)
        raise UsageError(f"{field}: " + msg.split(": ", 1)[1] if msg.startswith("train_on: ") else msg) from None


def settings_from_args(args: argparse.Namespace, paired: Optional[str] = None) -> TrainSettings:
    """The run's settings: --preset (else `paired`, the training preset the app pairs with the model preset and
    method; else the defaults), with every option given on top; a bad value names its option."""
    name = args.preset or paired
    base = training_presets()[name] if name else TrainSettings()
    changes = {k: v for k, v in {
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "weight_decay": args.weight_decay,
        "noise_patches": args.noise_patches,
        "patch_size": parse_ints(args.patch_size, 2, "--patch-size") if args.patch_size else None,
        "patch_dir": args.patch_dir,
        "val_split": args.val_split, "seed": args.seed, "device": args.device, "loss": args.loss,
        "amp_bf16": None if args.precision is None else args.precision == "bf16",
        "shuffle": False if args.fixed_order else None, "train_on": args.train_on,
    }.items() if v is not None}
    try:
        settings = base.replace(**changes)
    except ValueError as e:  # "batch_size: ..." -> "--batch-size: ...": the option the user typed
        field, sep, rest = str(e).partition(": ")
        flag = {"amp_bf16": "--precision", "shuffle": "--fixed-order"}.get(field, "--" + field.replace("_", "-"))
        raise UsageError(f"{flag}: {rest}" if sep and field in changes else str(e)) from None
    if settings.patch_dir and not settings.noise_patches:
        print("note: --patch-dir has no effect without noise patches (--noise-patches N)", file=sys.stderr)
    return settings


# Options a resumed run cannot change (its train.json holds them): (flag, argparse attribute).
FIXED_ON_RESUME = (("--batch-size", "batch_size"), ("--lr", "lr"), ("--weight-decay", "weight_decay"),
                    ("--size", "size"), ("--tile", "tile"), ("--noise-patches", "noise_patches"),
                    ("--patch-size", "patch_size"),
                    ("--patch-dir", "patch_dir"), ("--val-split", "val_split"), ("--seed", "seed"),
                    ("--preset", "preset"), ("--loss", "loss"), ("--precision", "precision"),
                    ("--fixed-order", "fixed_order"), ("--method", "method"), ("--train-on", "train_on"),
                    ("--backbone", "backbone"), ("--layers", "layers"), ("--coreset", "coreset"), ("--k", "k"),
                    ("--option", "option"))


# Method options with a flag of their own: (flag, argparse attribute, option name).
OPTION_FLAGS = (("--backbone", "backbone", "backbone"), ("--layers", "layers", "layers"),
                 ("--coreset", "coreset", "coreset"), ("--k", "k", "k"))


def method_options(args: argparse.Namespace) -> dict:
    """The method's options from --backbone/--layers/--coreset/--k and every --option KEY=VALUE."""
    options: dict = {}
    for flag, attr, name in OPTION_FLAGS:
        if getattr(args, attr, None) is not None:
            value = getattr(args, attr)
            options[name] = [v.strip() for v in value.split(",") if v.strip()] if name == "layers" else value
    for item in args.option or ():
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--option {item!r}: expected KEY=VALUE, e.g. --option svdd_epochs=20")
        try:
            value = json.loads(text)  # numbers, true/false, lists; anything else is a string
        except json.JSONDecodeError:
            value = text
        except RecursionError:  # QA sweep 15: a traceback
            raise UsageError(f"--option {key.strip()}: nested too deeply") from None
        options[key.strip().replace("-", "_")] = value
    return options


def fix_hint(config: str, shape: tuple[int, int, int]) -> str:
    """The call that writes a version of `config` (a file or a preset name) whose paddings fit `shape`."""
    return f" (`udd shapes {config} --input {','.join(map(str, shape))} --fix OUT` writes a config that fits)"


def option_error(e: ValueError, args: argparse.Namespace, options: dict, shape: tuple[int, int, int]) -> UsageError:
    """A method's refusal named by what the user typed: "coreset: must be ..." as "--coreset: must be ...",
    an --option KEY as "--option KEY: ...", the input size as "--size", anything else as the config at that size
    (with the `udd shapes --fix` call where paddings are to blame: QA sweep 12, "set latent_opad" alone could
    not be done to a preset)."""
    field, sep, rest = str(e).partition(": ")
    # The flag only when it was typed: latent-knn's k comes as --option k=..., not as the memory bank's --k.
    flag = next((f for f, attr, name in OPTION_FLAGS if name == field and getattr(args, attr, None) is not None), None)
    if sep and flag:
        return UsageError(f"{flag}: {rest}")
    if sep and field in options:
        return UsageError(f"--option {field}: {rest}")
    if field.startswith("size"):  # "size 4x4: the memory-bank method needs ..."
        return UsageError(f"--size {field[4:].strip()}: {rest}" if sep else f"--size: {e}")
    if args.config:  # a design that does not fit the input (shapes, feature channels)
        fix = fix_hint(args.config, shape) if "must mirror" in str(e) else ""
        return UsageError(f"{args.config} at {shape[1]}x{shape[2]}: {e}{fix}")
    return UsageError(str(e))


def option_typed(args: argparse.Namespace, attr: str) -> bool:
    """Whether an option was typed: a value other than None, or a flag set (`--seed 0` and `--weight-decay 0`
    are given: `0 in (None, False)` held, so a resume ignored them silently)."""
    value = getattr(args, attr, None)
    return value is not None and value is not False


# Training-loop options that a method fitted in one pass (no epochs: the memory bank) would silently ignore.
EPOCH_OPTIONS = (("--epochs", "epochs"), ("--batch-size", "batch_size"), ("--lr", "lr"),
                  ("--weight-decay", "weight_decay"),
                  ("--noise-patches", "noise_patches"), ("--patch-size", "patch_size"), ("--patch-dir", "patch_dir"),
                  ("--preset", "preset"), ("--loss", "loss"), ("--precision", "precision"),
                  ("--fixed-order", "fixed_order"))
