"""What the Train page's Start would be refused for, said as the form is filled, before any image loads.

`TrainJob.create` refuses the same things after Start (and `udd train` before its data loads); here each is
said in the page's words beside the field it names, and Start stays disabled while one holds:
a model the method cannot build at the chosen size or with the typed options (`model_choice`), a
cross-entropy loss on a model without probabilities, a die-class model or loss on photos, a run name the
runs folder refuses or already holds (`start_refusal`), and chosen classes the data lacks.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from .data import data_kind
from .image_shapes import batch_bytes, checked_image_shape
from .losses import check_fits_data, check_loss_fits
from .methods import check_choice, choice_message, detector_class, parse_options
from .presets import design_input
from .sources import new_run_path


@dataclass(frozen=True)
class ModelChoice:
    """The model side of a new run, checked: what Start builds, or the one line saying why it cannot."""
    config: Any  # the AEConfig to train; None for a method without one, or while refused
    shape: Optional[tuple[int, int, int]]  # the images' (C, H, W); None while refused or no config is chosen yet
    options: dict  # the method options as typed ({} when blank or not JSON)
    per_image: int  # feature bytes a fit keeps per image, for the memory estimate (0 for pixel methods)
    refusal: Optional[str]  # the first thing wrong, as one line for the form; None when Start may go
    method: str = "autoencoder"  # the detection method chosen

    def step_bytes(self) -> int:
        """Bytes a training step holds per image (`image_shapes.batch_bytes` of one); 0 for a method fitted in
        one pass, or while the choice is refused."""
        if self.shape is None or not detector_class(self.method).trains_epochs:
            return 0
        return batch_bytes(self.config, self.shape, self.method, 1)


def model_choice(method: str, options_text: str, config: Any = None, size: Optional[Sequence[int]] = None,
                 channels: Optional[int] = None, design_shape: Optional[Sequence[int]] = None,
                 error: Optional[Exception] = None) -> ModelChoice:
    """Check a training form's model choice before any data loads.

    `config`: the chosen AEConfig, or None (a method without one, or no config file picked yet);
    `design_shape`: the Design page's (C, H, W) when its config is the choice, else `size` (H, W) and the
    preset's `channels` set the images' shape; `error`: why the config could not be read (a bad file),
    which comes first. The refusal names the field: "method options: ..." or "model: ...".
    """
    shape, refusal = None, error
    if refusal is None:
        try:
            if design_shape is not None:
                shape = design_input(config, method, design_shape)
            elif config is not None or not detector_class(method).uses_config:
                shape = checked_image_shape(config, method, tuple(size), channels)
        except ValueError as e:  # a design that does not mirror at this size
            refusal = e
    options, per_image = {}, 0
    try:
        options = parse_options(options_text, method)
        if shape is not None and refusal is None:  # bad options, sizes and configs: refused before any data loads
            per_image = check_choice(method, shape, options, config)
    except ValueError as e:
        refusal = refusal or e
    if refusal is not None:
        return ModelChoice(None, None, options, 0, choice_message(refusal, options), method)
    return ModelChoice(config, shape, options, per_image, None, method)


FORM_LABELS = {"train_on": "Train on", "patch_dir": "Noise pattern folder"}  # engine field -> the page's label


def form_message(error: Union[Exception, str]) -> str:
    """An engine error as the Train page labels its field: "train_on: ..." reads "Train on: ..."."""
    field, sep, rest = str(error).partition(": ")
    return f"{FORM_LABELS[field]}: {rest}" if sep and field in FORM_LABELS else str(error)


def start_refusal(root: Union[str, Path], run_name: str, data_path: Optional[str], config: Any, loss: str,
                  trains_epochs: bool, kind_of: Callable[[str], str] = data_kind) -> Optional[str]:
    """The first refusal of a Start with these choices, in one line with what to do, or None.

    `config`: the model's AEConfig (None without one); `trains_epochs`: the method has a loss to check;
    `kind_of`: `data.data_kind`, or the page's cached copy of it (it lists a plain folder's files).
    """
    if config is not None and trains_epochs:
        try:  # QA sweep 7: said only after Start
            check_loss_fits(loss, config.output)
        except ValueError as e:
            return f"{e}, or pick another loss."
        if data_path:
            try:  # a wafer (die-class) model or loss on photos
                check_fits_data(loss, config.output, kind_of(data_path))
            except (ValueError, OSError) as e:
                return f"{e}. Pick wafer data, or another model or loss."
    if run_name:
        try:  # a name the runs folder refuses or already holds: said as typed (QA sweep 7)
            new_run_path(root, run_name, data_path)
        except ValueError as e:
            return str(e)
    return None
