"""Does a generated wafer map look like its class? A nearest-centroid measure on failing-die maps.

Each class's centroid is the mean failing-die map (1 where a die fails, 0 elsewhere) of its real
maps. A generated map is assigned to the class whose centroid is nearest (squared Euclidean
distance). The measure is the share of generated maps that land in their source's class, against
chance (1 / number of classes). Copying the source would score as well as the real maps do, so
the share of on-wafer dies that changed from the source is reported beside it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

MIN_MARGIN = 0.2  # `passes`: in-class share at least this far above chance ...
MIN_CHANGED = 0.01  # ... and at least this share of on-wafer dies changed (not a copy of the source)


def failing(maps: np.ndarray) -> np.ndarray:
    """(N, H, W) die values -> (N, H*W) float64, 1 where a die fails."""
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"maps: expected (N, H, W) die values, got shape {maps.shape}")
    return (maps == 2).reshape(len(maps), -1).astype(np.float64)


def centroids(maps: np.ndarray, labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """(K, H*W) mean failing-die map of each class's real maps; a class without maps is a ValueError."""
    labels = np.asarray([str(v) for v in labels])
    if len(labels) != len(maps):
        raise ValueError(f"labels: {len(labels)} labels for {len(maps)} maps")
    f = failing(maps)
    out = []
    for c in classes:
        sel = labels == c
        if not sel.any():
            raise ValueError(f"class {c!r}: no real maps to make its centroid from")
        out.append(f[sel].mean(axis=0))
    return np.stack(out)


def nearest_class(maps: np.ndarray, cents: np.ndarray, classes: Sequence[str]) -> list[str]:
    """The class of the nearest centroid (K, H*W) for each map (N, H, W)."""
    f = failing(maps)  # (N, P)
    if f.shape[1] != cents.shape[1]:
        raise ValueError(f"maps: {f.shape[1]} dies each, the centroids have {cents.shape[1]}")
    d = (f ** 2).sum(1)[:, None] - 2 * f @ cents.T + (cents ** 2).sum(1)[None, :]  # (N, K) squared distances
    return [classes[i] for i in np.argmin(d, axis=1)]


def changed_share(generated: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """(N,) share of each source's on-wafer dies whose value differs in its generated map."""
    generated, sources = np.asarray(generated), np.asarray(sources)
    if generated.shape != sources.shape:
        raise ValueError(f"generated maps {generated.shape} and source maps {sources.shape} differ in shape")
    on = sources != 0  # (N, H, W)
    diff = (generated != sources) & on
    return diff.reshape(len(on), -1).sum(1) / np.maximum(on.reshape(len(on), -1).sum(1), 1)


@dataclass(frozen=True)
class Resemblance:
    """How much generated maps look like their source class, and how much they differ from their sources."""

    in_class: float  # share of generated maps whose nearest centroid is their source's class
    chance: float  # 1 / number of classes
    changed: float  # mean share of on-wafer dies changed from the source
    n: int  # generated maps measured
    classes: tuple[str, ...]  # the centroid classes
    per_class: dict = field(default_factory=dict)  # source class -> {"n", "in_class", "changed", "assigned"}
    real_in_class: float = float("nan")  # the same rule on the source maps themselves: the ceiling
    recon_changed: float = float("nan")  # dies changed by the plain reconstruction (sigma 0), when measured

    def passes(self, min_margin: float = MIN_MARGIN, min_changed: float = MIN_CHANGED) -> bool:
        """In-class share at least `min_margin` above chance, and not copies of the sources."""
        return self.in_class >= self.chance + min_margin and self.changed >= min_changed

    def to_dict(self) -> dict:
        return {"in_class": self.in_class, "chance": self.chance, "changed": self.changed, "n": self.n,
                "classes": list(self.classes), "real_in_class": self.real_in_class, "recon_changed": self.recon_changed,
                "per_class": self.per_class}


def resemblance(generated: np.ndarray, gen_labels: Sequence[str], gen_sources: np.ndarray,
                real_maps: np.ndarray, real_labels: Sequence[str], classes: Sequence[str]) -> Resemblance:
    """Measure generated maps (N, H, W) against the class centroids of real maps.

    ``gen_labels`` is each generated map's source class, ``gen_sources`` (N, H, W) its source map.
    ``classes`` are the centroid classes (normally every class of the real maps, normal ones too:
    a blank variant then lands in "none" and counts against the measure).
    """
    classes = [str(c) for c in classes]
    gen_labels = [str(v) for v in gen_labels]
    if len(gen_labels) != len(generated):
        raise ValueError(f"labels: {len(gen_labels)} labels for {len(generated)} generated maps")
    if not len(generated):
        raise ValueError("generated maps: none given")
    if unknown := sorted(set(gen_labels) - set(classes)):
        raise ValueError(f"labels: {unknown[0]!r} is not one of the centroid classes")
    cents = centroids(real_maps, real_labels, classes)
    got = nearest_class(generated, cents, classes)
    hit = np.asarray([g == s for g, s in zip(got, gen_labels)])
    real_hit = np.asarray([g == s for g, s in zip(nearest_class(gen_sources, cents, classes), gen_labels)])
    ch = changed_share(generated, gen_sources)
    per = {}
    for c in sorted(set(gen_labels)):
        sel = np.asarray([v == c for v in gen_labels])
        per[c] = {"n": int(sel.sum()), "in_class": float(hit[sel].mean()), "changed": float(ch[sel].mean()),
                  "assigned": dict(sorted({k: int(sum(1 for g, m in zip(got, sel) if m and g == k))
                                           for k in set(np.asarray(got)[sel])}.items()))}
    return Resemblance(float(hit.mean()), 1.0 / len(classes), float(ch.mean()), len(generated), tuple(classes),
                       per, float(real_hit.mean()))


def measure_model(model, images: np.ndarray, labels: Sequence[str], sigma: float, per_class: int = 16,
                  seed: int = 0, classes: Sequence[str] | None = None,
                  sources_from: np.ndarray | None = None) -> tuple[Resemblance, np.ndarray, list[str]]:
    """Generate ``per_class`` variants per pattern class (from different sources while the class has
    them) at ``sigma`` and measure them against the class centroids of the same data.

    ``classes`` are the centroid classes (default: every label); ``sources_from`` (N,) bool limits
    the source maps to some images (a held-out half), the centroids still use every image.
    Returns (the measure, the generated maps (N, H, W), their source classes).
    """
    from dataclasses import replace

    from .generation import generate, reconstruct  # the torch stack, only when a model is measured
    from .wafer_generation import generated_maps, pattern_classes, source_maps

    labels = [str(v) for v in labels]
    all_maps = source_maps(images)  # (N, H, W)
    centroid_classes = sorted(set(labels)) if classes is None else list(classes)
    pick = labels if sources_from is None else [v if ok else "\0not a source" for v, ok in zip(labels, sources_from)]
    maps, labs, srcs, idxs = [], [], [], []
    for i, c in enumerate(pattern_classes(labels)):
        if c not in centroid_classes or c not in pick:
            continue
        g = generate(model, images, sigma, per_class, seed + i, pick, c)
        maps.append(generated_maps(g.outputs, all_maps[g.sources]))
        idxs.append(g.sources)
        labs += [c] * len(g.sources)
        srcs.append(all_maps[g.sources])
    if not maps:
        raise ValueError("labels: the data has no pattern classes to generate from")
    generated, src_maps = np.concatenate(maps), np.concatenate(srcs)
    r = resemblance(generated, labs, src_maps, all_maps, labels, centroid_classes)
    # What sigma 0 changes already (the model smooths away isolated failing dies): the variants' own share.
    idx = np.concatenate(idxs)
    recon = generated_maps(reconstruct(model, images, idx), all_maps[idx])
    return replace(r, recon_changed=float(changed_share(recon, all_maps[idx]).mean())), generated, labs
