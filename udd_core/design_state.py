"""The Design page's state and its edits, headless: what each widget's change does to the design.

The page's session state is a plain mutable mapping here, so every edit (a preset, the JSON text, the
latent fields, the block count, the input kind, the image shape, an uploaded file, a table edit, a
suggested fix) is testable without streamlit. Two keys are the single source of truth and other pages
read them: `design_config` (a valid config as a JSON-ready dict) and `design_input_shape` (the images'
(C, H, W)). Every widget's value is written from them, never the other way round.
"""
from __future__ import annotations

import json
from typing import Any, MutableMapping, Optional

from . import architecture as arch
from .config import AEConfig, noting_warnings, parse_config
from .feature_input import parse_input
from .image_shapes import MAX_SIDE, image_channels
from .presets import PIXEL_PRESET, ModelPreset, design_label, model_presets

CONFIG, SHAPE = "design_config", "design_input_shape"  # read by the Train page: keep the names
PRESET_NAME = "design_preset_name"  # the preset the design came from; survives a visit to another page
SOURCE = "design_source"  # (file name, config dict) of an uploaded config, until a preset is loaded
INPUT_KINDS = ("pixels", "backbone features")  # the "reconstructs" radio's choices


def parse(source: Any) -> tuple[AEConfig, list[str]]:
    """The config and the parser's warnings (unknown keys); raises ValueError with a one-line message."""
    return noting_warnings(lambda: parse_config(source))


class DesignState:
    """The Design page's edits over its session state (`design_*` keys).

    Each `on_*` method is a widget's change callback: it reads the widget's value from the state and
    rewrites the design, or leaves a one-line `notice` where the value is refused.
    """

    def __init__(self, state: MutableMapping[str, Any], presets: Optional[dict[str, ModelPreset]] = None):
        self.ss = state
        self.presets = presets if presets is not None else model_presets()

    # --- reading ----------------------------------------------------------------------------------
    def config(self) -> AEConfig:
        return parse(self.ss[CONFIG])[0]

    def shape(self) -> tuple[int, int, int]:
        return tuple(self.ss[SHAPE])

    def editor_key(self) -> str:
        """The block table's widget key: a new key per config version gives it a fresh, empty edit state."""
        return f"design_blocks_table_{self.ss['design_editor_version']}"

    def is_edited(self) -> bool:
        """Whether the design is no longer the chosen preset's."""
        return not self.presets[self.ss["design_preset"]].is_design(self.ss[CONFIG], self.ss[SHAPE])

    def label(self) -> str:
        """What the design is called beside its preset box and on the Train page: the uploaded file it came from
        ("AE_config.txt", ", edited" once changed), else the preset's name (", edited" likewise)."""
        if source := self.ss.get(SOURCE):
            name, loaded = source
            return f"{name}, edited" if loaded != self.ss[CONFIG] else name
        return design_label(self.ss.get(PRESET_NAME), self.ss[CONFIG])

    def pop_notice(self, key: str = "design_notice") -> Optional[tuple[str, str]]:
        """(level, text) left by the last callback, shown once."""
        return self.ss.pop(key, None)

    def link_value(self) -> Optional[str]:
        """The design as one compact JSON text for the page's URL (`?design=`), so that a browser refresh or a
        shared link opens it again; None while the design is its preset's, unedited (the URL stays clean)."""
        if not self.is_edited():
            return None
        return json.dumps({"preset": self.ss["design_preset"], "shape": list(self.shape()), "config": self.ss[CONFIG]},
                          separators=(",", ":"))

    def restore_link(self, text: str) -> None:
        """Open the design a `link_value` text holds; a text that is not one leaves a one-line notice and the
        default preset."""
        try:
            d = json.loads(text)
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
            shape = tuple(d.get("shape") or ())
            if len(shape) != 3 or not all(isinstance(v, int) and 1 <= v <= MAX_SIDE for v in shape):
                raise ValueError(f"shape: expected 3 whole numbers from 1 to {MAX_SIDE}, got {d.get('shape')!r}")
            config = parse(d.get("config"))[0]
        except ValueError as e:  # json's JSONDecodeError is one
            self.ss["design_notice"] = ("error", f"The design in the link could not be read ({e}); the preset is "
                                                 "loaded instead.")
            return
        preset = d.get("preset") if d.get("preset") in self.presets else PIXEL_PRESET
        self.ss["design_preset"] = self.ss[PRESET_NAME] = preset
        self.set_config(config, shape)

    # --- the top of every run ---------------------------------------------------------------------
    def start(self, link: Optional[str] = None) -> None:
        """Before any widget is drawn: a first visit opens the design in the link (`link_value`), else the
        default preset; a stored design that no longer parses is replaced, pending table edits are folded in,
        and widgets that lost their state (another page was shown) get it back."""
        ss = self.ss
        if (CONFIG not in ss or SHAPE not in ss) and link:
            self.restore_link(link)
        if CONFIG not in ss or SHAPE not in ss:
            ss["design_preset"] = PIXEL_PRESET
            self.load_preset()
        ss.setdefault("design_editor_version", 0)
        ss.setdefault("design_preset", ss.get(PRESET_NAME, PIXEL_PRESET))
        try:  # another page may have stored a design; it must still be one
            parse(ss[CONFIG])
        except ValueError as e:
            ss["design_notice"] = ("error", f"The stored design was invalid ({e}); the preset is loaded instead.")
            self.load_preset()
        self.absorb_table_edits()
        self.sync_widgets(overwrite=False)

    def sync_widgets(self, overwrite: bool) -> None:
        """Write the widgets' state from the config and input shape (missing keys only unless overwrite)."""
        ss = self.ss
        values = {f"design_{k}": v for k, v in arch.form_values(ss[CONFIG], ss[SHAPE]).items()}
        values["design_input_kind"] = INPUT_KINDS[1] if values.pop("design_features") else INPUT_KINDS[0]
        if "design_json" not in ss:
            ss.pop("design_json_error", None)  # the text is reseeded from the config, so its error is gone
        for key, value in values.items():
            if overwrite or key not in ss:
                ss[key] = value

    def set_config(self, config: AEConfig, shape: Optional[tuple[int, int, int]] = None) -> None:
        """Make `config` the design (a pixel AE's image channels follow it) and rewrite every widget from it."""
        ss = self.ss
        c, h, w = shape or ss[SHAPE]
        ss[CONFIG] = config.to_dict()
        ss[SHAPE] = (image_channels(config, preferred=c), h, w)  # a feature AE's images stay gray or RGB
        ss.pop("design_json_error", None)
        ss["design_editor_version"] = ss.get("design_editor_version", 0) + 1
        ss.pop("design_undo", None)  # offered only until the next change
        self.sync_widgets(overwrite=True)

    # --- callbacks --------------------------------------------------------------------------------
    def load_preset(self) -> None:
        """The chosen preset replaces the design; edits it throws away can be taken back (`design_undo`)."""
        ss = self.ss
        before = ss.get(PRESET_NAME)
        edited = (CONFIG in ss and SHAPE in ss and before in self.presets
                  and not self.presets[before].is_design(ss[CONFIG], ss[SHAPE]))
        undo = (ss[CONFIG], tuple(ss[SHAPE]), before) if edited else None
        ss[PRESET_NAME] = ss["design_preset"]
        ss.pop(SOURCE, None)  # a preset, not the uploaded file, from now on
        p = self.presets[ss["design_preset"]]
        self.set_config(p.config, p.input_shape)
        if undo:
            ss["design_undo"] = undo  # (config, shape, preset name)

    def undo_preset(self) -> None:
        """Back to the edited design that loading a preset replaced, under its preset's name."""
        config, shape, name = self.ss.pop("design_undo")
        self.ss["design_preset"] = self.ss[PRESET_NAME] = name
        self.set_config(parse(config)[0], shape)

    def on_json(self) -> None:
        try:
            self.set_config(parse(self.ss["design_json"])[0])
        except ValueError as e:  # bad JSON, code instead of literals, or a ConfigError; the box keeps the text
            self.ss["design_json_error"] = str(e)

    def on_latent(self) -> None:
        fields = arch.latent_fields(*(self.ss[f"design_{k}"] for k in ("latent_size", "latent_ker", "lopad_h",
                                                                         "lopad_w")))
        self.set_config(parse(dict(self.ss[CONFIG], **fields))[0])

    def on_blocks(self) -> None:
        self.set_config(arch.with_solved_paddings(arch.resize_blocks(self.config(), int(self.ss["design_blocks"])),
                                                  self.ss[SHAPE]))

    def on_input(self) -> None:
        """Pixels or backbone features: the AE's first and last channels follow, paddings are re-solved."""
        ss, spec = self.ss, None
        if ss["design_input_kind"] == INPUT_KINDS[1]:
            try:
                spec = parse_input({"kind": "features", "backbone": ss["design_backbone"],
                                    "layers": list(ss["design_layers"]), "pool": int(ss["design_pool"])})
            except ValueError as e:  # e.g. no layer picked
                ss["design_notice"] = ("error", str(e))
                self.sync_widgets(overwrite=True)
                return
        self.set_config(arch.with_solved_paddings(arch.with_input(self.config(), spec, ss[SHAPE][0]), ss[SHAPE]))

    def on_shape(self) -> None:
        ss = self.ss
        config, ss[SHAPE], refusal = arch.with_image_shape(
            self.config(), ss[SHAPE], tuple(int(ss[k]) for k in ("design_c", "design_h", "design_w")))
        if refusal:
            ss["design_notice"] = ("error", refusal)
        self.set_config(config)

    def on_upload(self, name: str, data: bytes) -> None:
        """A config file chosen in the uploader: loaded, or refused naming the file."""
        try:
            self.set_config(parse(data)[0])
            self.ss[SOURCE] = (name, self.ss[CONFIG])  # named after the file, not "<preset>, edited"
            self.ss["design_upload_notice"] = ("success", f"Loaded {name}.")
        except ValueError as e:
            self.ss["design_upload_notice"] = ("error", f"{name}: {e}")

    def apply(self, suggested: dict) -> None:
        """A suggested fix (paddings, feature channels), as a config dict."""
        self.set_config(parse(suggested)[0])

    def absorb_table_edits(self) -> None:
        """Fold the block table's pending cell edits into the config, before any widget is drawn.

        Done at the top of the run rather than in an on_change callback, so the same path runs when a test
        seeds the editor's state; afterwards the editor gets a new key and starts from the updated config.
        """
        pending = self.ss.get(self.editor_key())
        if not pending or not pending.get("edited_rows"):
            return
        try:
            self.set_config(parse(arch.apply_block_edits(self.config(), pending["edited_rows"]))[0])
        except ValueError as e:
            self.ss["design_table_error"] = f"Table edit not applied: {e}"
            self.ss["design_editor_version"] += 1  # drop the rejected edit from the editor
