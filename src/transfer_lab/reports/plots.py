"""Figures shared by the pipelines. Each returns a matplotlib Figure; a catalog dataset
(:class:`transfer_lab.io.datasets.FigureDataset`) writes it as a PNG and logs it to MLflow."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure


def subplots(nrows: int = 1, ncols: int = 1, **kwargs) -> tuple[Figure, object]:
    """``plt.subplots`` without pyplot: a plain Figure that leaves the user's backend alone
    (a notebook's ``%matplotlib inline`` keeps working) and never opens a window."""
    fig_kw = {k: kwargs.pop(k) for k in ("figsize", "dpi", "layout") if k in kwargs}
    fig = Figure(**fig_kw)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def image_grid(
    images: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    *,
    ncols: int = 4,
    cell: float = 2.6,
    suptitle: str | None = None,
    title_colors: Sequence[str] | None = None,
) -> Figure:
    """Images (H, W, 3 in 0-255, or H, W for a map) in a labelled grid."""
    n = max(len(images), 1)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows + (0.4 if suptitle else 0)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= len(images):
            continue
        img = np.asarray(images[i])
        if img.ndim == 2:
            ax.imshow(img, cmap="viridis")
        else:
            ax.imshow(np.clip(img, 0, 255).astype(np.uint8))
        if titles is not None and i < len(titles):
            color = title_colors[i] if title_colors is not None and i < len(title_colors) else "black"
            ax.set_title(str(titles[i]), fontsize=8, color=color)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    return fig


def feature_maps(
    activations: np.ndarray,
    *,
    layer_name: str,
    image: np.ndarray | None = None,
    max_maps: int = 32,
    ncols: int = 8,
) -> Figure:
    """The channels of one layer's activation (H, W, C) for one image, strongest first."""
    act = np.asarray(activations, dtype=np.float32)
    if act.ndim == 4:
        act = act[0]
    order = np.argsort(-act.reshape(-1, act.shape[-1]).mean(axis=0))[:max_maps]
    maps = [act[:, :, c] for c in order]
    titles = [f"ch {c}" for c in order]
    if image is not None:
        maps = [np.asarray(image)] + maps
        titles = ["input"] + titles
    return image_grid(
        maps, titles, ncols=ncols, cell=1.6,
        suptitle=f"Feature maps of layer {layer_name} ({act.shape[0]}x{act.shape[1]}, {act.shape[-1]} channels; "
        f"{len(order)} most active shown)",
    )


def confusion_matrix(cm: np.ndarray, class_names: Sequence[str], *, title: str = "Confusion matrix") -> Figure:
    cm = np.asarray(cm)
    n = len(class_names)
    size = min(max(4.0, 0.32 * n + 2.5), 18.0)
    fig, ax = subplots(figsize=(size, size))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    fs = 9 if n <= 10 else 6
    ax.set_xticklabels(class_names, rotation=90, fontsize=fs)
    ax.set_yticklabels(class_names, fontsize=fs)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 15:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center",
                        color="white" if norm[i, j] > 0.5 else "black", fontsize=fs)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def training_curves(history: Mapping[str, Sequence[float]], *, title: str = "Training curves") -> Figure:
    """Loss and accuracy per epoch, train against validation (Keras ``History.history``)."""
    metrics = [m for m in history if not m.startswith("val_") and m != "learning_rate"]
    fig, axes = subplots(1, max(len(metrics), 1), figsize=(4.5 * max(len(metrics), 1), 3.5), squeeze=False)
    for ax, m in zip(axes.flat, metrics):
        ax.plot(range(1, len(history[m]) + 1), history[m], marker="o", label="train")
        if f"val_{m}" in history:
            ax.plot(range(1, len(history[f"val_{m}"]) + 1), history[f"val_{m}"], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(m)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def line_plot(
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
) -> Figure:
    fig, ax = subplots(figsize=(5.5, 3.8))
    for name, ys in series.items():
        ax.plot(list(x), list(ys), marker="o", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend()
    fig.tight_layout()
    return fig
