"""The latent map: every image's latent code on the two main axes of the data set's codes (PCA).

A 2-D shadow of a space of hundreds or thousands of dimensions: two images close together on it may
still lie far apart, but classes that lie apart on it are apart in the latent space too, and generated
codes show how far a σ takes a source from its own class. The axes are fitted on the data's codes
alone and generated codes are only placed on them (`LatentMap.place`), so moving σ never moves the
data's points.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from .data import ImageSet
from .display import short_name
from .generation import encode_images
from .training_data import class_counts, is_normal, is_unknown

MAP_MAX_IMAGES = 1000  # codes on the map: evenly spaced beyond this, so the encoding stays a few seconds
NORMAL_COLOUR = "#9e9e9e"  # defect-free classes in grey: the defect classes take the colours
# Strong colours for the defect classes, set on each trace (Streamlit's chart theme would give pale ones that
# small dots on white hide: QA sweep 11); plotly's D3 set without its grey.
CLASS_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                 "#bcbd22", "#393b79")


@dataclass(frozen=True)
class LatentMap:
    """The data set's latent codes on their two main axes, and the axes to place other codes on."""

    xy: np.ndarray  # (N, 2) each mapped image's code on the two axes
    index: np.ndarray  # (N,) its index in the data set
    labels: list[str]  # (N,) its label
    names: list[str]  # (N,) its file or array name
    mean: np.ndarray  # (D,) the codes' mean: the map's origin
    axes: np.ndarray  # (D, 2) unit vectors along the two main axes
    explained: tuple[float, float]  # the share of the codes' variance along each axis
    n_images: int  # images in the data set (more than N when the map takes an evenly spaced part)

    def place(self, codes) -> np.ndarray:
        """Latent codes (M, L, h, w) or (M, D) on the map's axes: (M, 2)."""
        z = _flat(codes)
        if z.shape[1] != len(self.mean):
            raise ValueError(f"codes: {z.shape[1]} values each, the map's have {len(self.mean)}")
        return (z - self.mean) @ self.axes


def _flat(codes) -> np.ndarray:
    z = codes.detach().cpu().double().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes, np.float64)
    return z.reshape(len(z), -1)  # (M, D)


def main_axes(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """(mean (D,), axes (D, 2), explained shares) of codes (N, D): PCA's first two components.

    Solved on the smaller of the two Gram matrices (N x N or D x D), exactly: a code of a photo model
    has thousands of values, a data set a few hundred images. Each axis points where its largest
    component is positive, so the same codes always give the same picture. A set with a single
    direction of spread gets a zero second axis."""
    x = np.asarray(codes, np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"latent map: needs the codes of at least 2 images, got {len(x)}")
    mean = x.mean(axis=0)
    xc = x - mean  # (N, D)
    total = float((xc ** 2).sum())
    if not total > 0:
        raise ValueError("latent map: every image has the same latent code, so there is no spread to map")
    if xc.shape[1] <= xc.shape[0]:
        vals, vecs = np.linalg.eigh(xc.T @ xc)  # (D,), (D, D): ascending
        axes = vecs[:, ::-1][:, :2].copy()
    else:
        vals, vecs = np.linalg.eigh(xc @ xc.T)  # (N,), (N, N): the same nonzero eigenvalues
        u = vecs[:, ::-1][:, :2]
        axes = xc.T @ u  # (D, 2), each column's norm sqrt(its eigenvalue)
        axes = axes / np.maximum(np.linalg.norm(axes, axis=0), 1e-300)
    top = np.clip(vals[::-1][:2], 0, None)
    if axes.shape[1] < 2:  # a code of one value: a single axis
        axes, top = np.pad(axes, ((0, 0), (0, 1))), np.pad(top, (0, 1))
    dead = top <= total * 1e-12  # a direction without spread: no axis (its vector would be rounding noise)
    axes[:, dead], top[dead] = 0.0, 0.0
    rows = np.abs(axes).argmax(axis=0)
    axes = axes * np.where(axes[rows, [0, 1]] < 0, -1.0, 1.0)
    return mean, axes, (float(top[0] / total), float(top[1] / total))


def fit_latent_map(model, ds: ImageSet, max_images: int = MAP_MAX_IMAGES) -> LatentMap:
    """Encode up to `max_images` evenly spaced images of `ds` and map their codes on their main axes."""
    if max_images < 2:
        raise ValueError(f"max_images must be >= 2, got {max_images}")
    n = len(ds)
    idx = np.unique(np.linspace(0, max(n - 1, 0), min(n, max_images)).round().astype(int))
    if len(idx) < 2:
        raise ValueError(f"latent map: needs the codes of at least 2 images, got {len(idx)}")
    codes = _flat(encode_images(model, ds.images, idx))  # (N, D)
    mean, axes, explained = main_axes(codes)
    return LatentMap((codes - mean) @ axes, idx, [str(ds.labels[i]) for i in idx], [ds.names[i] for i in idx],
                     mean, axes, explained, n)


def latent_figure(lmap: LatentMap, generated=None, origins=None, generated_name: str = "generated",
                  hover: Optional[Sequence[str]] = None) -> dict:
    """The map as a plotly figure dict: one colour per class (defect-free classes grey), and optionally
    `generated` codes (M, ...) as crosses, each joined by a thin line to its source's code in `origins`
    (M, ...) and the sources ringed (random latents have none). `hover`: a text per generated code."""
    data: list[dict] = []
    labels = np.asarray(lmap.labels, dtype=object)
    normal = dict(zip(lmap.labels, is_normal(lmap.labels).tolist()))  # defect-free classes first, in grey
    unknown = dict(zip(lmap.labels, is_unknown(lmap.labels).tolist()))  # then unknown labels, grey rings
    defects = 0
    for label, count in sorted(class_counts(lmap.labels).items(),
                               key=lambda kv: (not normal[kv[0]], not unknown[kv[0]], kv[0])):
        at = labels == label
        grey = normal[label] or unknown[label]
        colour = NORMAL_COLOUR if grey else CLASS_COLOURS[defects % len(CLASS_COLOURS)]
        defects += not grey
        marker = {"size": 6, "opacity": 0.8, "color": colour, **({"symbol": "circle-open"} if unknown[label] else {})}
        data.append({"type": "scattergl", "mode": "markers", "x": lmap.xy[at, 0].tolist(),
                     "y": lmap.xy[at, 1].tolist(), "marker": marker,
                     "name": f"{label} ({count}{', unknown label' if unknown[label] else ''})",
                     "text": [f"{short_name(lmap.names[k])} · {label}" for k in np.flatnonzero(at)],
                     "hovertemplate": "%{text}<extra></extra>"})
    if generated is not None and len(generated):
        g = lmap.place(generated)  # (M, 2)
        if origins is not None:
            o = lmap.place(origins)  # (M, 2): repeated per variant, ringed once each
            xs = [v for a, b in zip(o[:, 0].tolist(), g[:, 0].tolist()) for v in (a, b, None)]
            ys = [v for a, b in zip(o[:, 1].tolist(), g[:, 1].tolist()) for v in (a, b, None)]
            data.append({"type": "scatter", "mode": "lines", "x": xs, "y": ys, "hoverinfo": "skip",
                         "line": {"width": 1, "color": "rgba(60,60,60,0.4)"}, "showlegend": False})
            ring = np.unique(o, axis=0)
            data.append({"type": "scatter", "mode": "markers", "x": ring[:, 0].tolist(), "y": ring[:, 1].tolist(),
                         "name": "sources", "hoverinfo": "skip",
                         "marker": {"size": 13, "symbol": "circle-open", "color": "black", "line": {"width": 2}}})
        data.append({"type": "scatter", "mode": "markers", "x": g[:, 0].tolist(), "y": g[:, 1].tolist(),
                     "name": generated_name,
                     "text": list(hover) if hover is not None else [f"#{j}" for j in range(len(g))],
                     "hovertemplate": "%{text}<extra></extra>", "marker": {"size": 8, "symbol": "x", "color": "black"}})
    e1, e2 = lmap.explained
    (x0, x1), (y0, y1) = fitted_ranges(np.concatenate([lmap.xy, lmap.place(generated)])
                                       if generated is not None and len(generated) else lmap.xy)
    layout = {"height": 460, "margin": {"l": 10, "r": 10, "t": 36, "b": 10},  # t: the modebar, off the legend
              "legend": {"itemsizing": "constant"},
              "xaxis": {"title": {"text": f"axis 1 ({e1:.0%} of the variance)"}, "zeroline": False,
                        "range": [x0, x1]},
              "yaxis": {"title": {"text": f"axis 2 ({e2:.0%} of the variance)"}, "zeroline": False,
                        "range": [y0, y1], "scaleanchor": "x"}}  # one scale: distances on the map are not stretched
    return {"data": data, "layout": layout}


def fitted_ranges(xy: np.ndarray, pad: float = 0.08) -> tuple[tuple[float, float], tuple[float, float]]:
    """Axis ranges that fit the points `xy` (N, 2) with a margin, each as wide as the wider span, so that on
    one scale neither axis falls back to plotly's default of -1..1 when its points do not spread (QA sweep 11:
    two images, axis 2 at 0% of the variance, put codes 0.08 apart in one blob on a -1.5..1.5 axis)."""
    lo, hi = xy.min(axis=0), xy.max(axis=0)  # (2,) each
    half = float((hi - lo).max()) / 2 * (1 + 2 * pad) or 1.0  # every point on one spot: any range shows it
    return tuple((float(c) - half, float(c) + half) for c in (lo + hi) / 2)


def map_caption(lmap: LatentMap, generated: Optional[str] = None) -> str:
    """What the map shows, in words: its dots, how much of the spread its axes hold, and `generated`
    ("noised" or "random") when crosses are drawn on it, or "hw2" when the HW2 view's variants are not."""
    part = (f"{len(lmap.index)} of the {lmap.n_images} images, evenly spaced" if len(lmap.index) < lmap.n_images
            else f"all {lmap.n_images} images")
    text = (f"Each dot is an image's latent code ({part}), seen along the two directions in which this data's "
            f"codes spread most (PCA; together {sum(lmap.explained):.0%} of their variance). Classes that lie apart "
            "here lie apart in the latent space too; dots close together here may still be far apart in it.")
    if generated == "noised":
        text += " Crosses: the generated codes above (source code + noise), each joined to its ringed source."
    elif generated == "random":
        text += " Crosses: the random latents above."
    elif generated == "hw2":  # QA sweep 11: the crosses vanished unexplained
        text += (" The HW2 view's variants are not drawn on it: switch that view off to see the generated codes "
                 "as crosses.")
    return text


def map_csv(lmap: LatentMap, generated=None, kind: str = "generated", names: Optional[Sequence[str]] = None,
            sources: Optional[Sequence[int]] = None, labels: Optional[Sequence[str]] = None) -> str:
    """CSV text of the map: one line per mapped image (kind "data", its index in the data set, file name,
    label, x, y), then one per `generated` code (kind `kind`, its output number, its file name in `names`,
    its source's label and data-set index when there are `sources`, x, y). The axes' shares of the
    variance are columns too, so the file reads on its own."""
    buf = io.StringIO()
    cols = ["kind", "index", "name", "label", "source", "x", "y", "axis1_variance", "axis2_variance"]
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    shares = {"axis1_variance": f"{lmap.explained[0]:.6g}", "axis2_variance": f"{lmap.explained[1]:.6g}"}
    for (x, y), i, name, label in zip(lmap.xy.tolist(), lmap.index.tolist(), lmap.names, lmap.labels):
        w.writerow({"kind": "data", "index": i, "name": name, "label": label, "source": "",
                    "x": f"{x:.6g}", "y": f"{y:.6g}", **shares})
    for j, (x, y) in enumerate(lmap.place(generated).tolist() if generated is not None else []):
        w.writerow({"kind": kind, "index": j, "name": names[j] if names is not None else "",
                    "label": labels[j] if labels is not None else "",
                    "source": int(sources[j]) if sources is not None else "", "x": f"{x:.6g}", "y": f"{y:.6g}",
                    **shares})
    return buf.getvalue()
