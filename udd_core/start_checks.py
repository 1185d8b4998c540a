"""What the Train page's Start would be refused for, said as the form is filled, before any image loads.

`TrainJob.create` refuses the same things after Start (and `udd train` before its data loads); here each is
said in the page's words beside the field it names, and Start stays disabled while one holds:
a cross-entropy loss on a model without probabilities, a die-class model or loss on photos, a run name the
runs folder refuses or already holds, and chosen classes the data lacks.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Union

from .data import data_kind
from .losses import check_fits_data, check_loss_fits
from .sources import new_run_path


def form_message(error: Union[Exception, str]) -> str:
    """An engine error as the Train page labels its field: "train_on: ..." reads "Train on: ..."."""
    msg = str(error)
    return "Train on: " + msg.removeprefix("train_on: ") if msg.startswith("train_on: ") else msg


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
