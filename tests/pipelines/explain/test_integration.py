"""explain inside other pipelines: evaluation's worst-mistakes gallery shows each photo beside its
map; adversarial's figures show the map of the original and of the attacked image."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from transfer_lab.pipelines.adversarial.nodes import _saliency_maps
from transfer_lab.pipelines.evaluation.nodes import _mistakes_gallery

from .tiny import SIZE, grey_with_red_patch, redness_model


def _shown(fig):
    return [np.asarray(ax.images[0].get_array()) for ax in fig.axes if ax.images]


def test_mistakes_gallery_shows_each_photo_beside_its_map(tmp_path):
    images, _ = grey_with_red_patch(n=2, seed=9)
    paths = []
    for i, image in enumerate(images):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image.astype(np.uint8)).save(paths[-1])
    mistakes = pd.DataFrame({"path": paths, "_truth": ["other"] * 2, "_predicted": ["red"] * 2,
                             "top1_class": ["red"] * 2, "confidence": [0.9, 0.8]})
    loads = []
    model = redness_model()
    fig = _mistakes_gallery(mistakes, 8, lambda: loads.append(1) or model)
    shown = _shown(fig)
    assert len(shown) == 4 and loads == [1]  # photo, map, photo, map; the model loaded once
    assert shown[0].shape == shown[1].shape == (SIZE, SIZE, 3)
    assert not np.array_equal(shown[0], shown[1])  # the map is drawn over the photo
    assert "saliency" in fig._suptitle.get_text()
    assert len(_shown(_mistakes_gallery(mistakes, 8))) == 2  # no model: photos only


def test_adversarial_maps_follow_the_evidence_the_attack_moved():
    original, corners = grey_with_red_patch(n=2, seed=11)
    attacked = np.clip(128 + np.random.default_rng(0).normal(0, 8, original.shape), 0, 255).astype(np.float32)
    for i, (r, c) in enumerate(corners):  # the "attack" moves the red square to the opposite corner
        rr, cc = SIZE - 8 - r, SIZE - 8 - c
        attacked[i, rr:rr + 8, cc:cc + 8] = (230.0, 40.0, 40.0)
    before, after = _saliency_maps(redness_model(), original, attacked)
    assert before.shape == after.shape == (2, SIZE, SIZE)
    for i, (r, c) in enumerate(corners):
        peak_before = np.unravel_index(before[i].argmax(), (SIZE, SIZE))
        peak_after = np.unravel_index(after[i].argmax(), (SIZE, SIZE))
        assert r - 2 <= peak_before[0] < r + 10 and c - 2 <= peak_before[1] < c + 10
        rr, cc = SIZE - 8 - r, SIZE - 8 - c
        assert rr - 2 <= peak_after[0] < rr + 10 and cc - 2 <= peak_after[1] < cc + 10
    assert _saliency_maps(redness_model(), original[:0], attacked[:0]) == (None, None)
