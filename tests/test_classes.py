"""transfer_lab.data.classes (class sets, species groups, ImageNet counterparts) and the one
softmax (transfer_lab.models.predict)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from transfer_lab.data import classes as vocab
from transfer_lab.models.predict import as_probabilities, softmax

IMAGENET = [f"c{i}" for i in range(1000)]


def test_names_and_species_models():
    assert vocab.norm(" Maine-Coon cat ") == "maine_coon_cat"
    assert vocab.is_species_model(["Dog", "cat"]) and not vocab.is_species_model(["cat", "dog", "bird"])
    assert vocab.species_of_breed("Bengal") == "cat" and vocab.species_of_breed("pug") == "dog"


def test_class_set_names_indices_lists_and_near_matches():
    names = ["tabby", "tiger_cat", "Siamese_cat", "beagle"]
    assert vocab.class_set("Siamese cat", names, "t") == (2,)
    assert vocab.class_set("3", names, "t") == (3,)
    assert vocab.class_set(["beagle", 0, "beagle"], names, "t") == (3, 0)
    with pytest.raises(ValueError, match="Near matches: siamese_cat"):
        vocab.class_set("siamese_kat", names, "adversarial.target")
    with pytest.raises(ValueError, match="adversarial.target is an empty list"):
        vocab.class_set([], names, "adversarial.target")


def test_imagenet_groups():
    assert vocab.class_set("cat", IMAGENET, "t") == (281, 282, 283, 284, 285)
    assert len(vocab.class_set("dogs", IMAGENET, "t")) == 118
    assert vocab.class_set(["c3", "c5"], IMAGENET, "t") == (3, 5)


def test_species_groups_make_cat_and_dog_mean_every_breed_of_the_species():
    manifest = pd.DataFrame({
        "label": ["Bengal", "Bengal", "pug", "beagle", "Sphynx", "unused"],
        "species": ["Cat", "Cat", "dog", "dog", "cat", None],
    })
    names = ["beagle", "Bengal", "pug", "Sphynx"]
    species = vocab.species_of(manifest)
    assert species == {"Bengal": "cat", "pug": "dog", "beagle": "dog", "Sphynx": "cat"}
    groups = vocab.species_groups(species, names)
    assert groups == {"cat": (1, 3), "dog": (0, 2)}
    assert vocab.class_set("cat", names, "target", groups=groups) == (1, 3)
    assert vocab.species_of(manifest[["label"]]) == {}
    # a photo's true set: its label, else its species, else none
    assert vocab.find_set([float("nan"), "dog"], names, groups=groups) == ((0, 2), 1)
    assert vocab.find_set(["okapi", ""], names, groups=groups) == (None, -1)


def test_imagenet_counterparts_by_class_map_name_or_species():
    names = list(IMAGENET)
    names[151], names[281] = "Chihuahua", "tabby"
    species = {"Abyssinian": "cat", "Chihuahua": "dog"}
    assert vocab.imagenet_set(["tabby"], names) == ([281], "name")
    idx, how = vocab.imagenet_set(["Abyssinian"], names, species=species)
    assert idx == [281, 282, 283, 284, 285] and how == "species"
    assert vocab.imagenet_set(["Abyssinian"], names, class_map={"Abyssinian": "tabby"}) == ([281], "class_map")
    assert vocab.imagenet_set(["okapi"], names) == ([], "none")
    with pytest.raises(ValueError, match=r"class_map.Abyssinian"):
        vocab.imagenet_set(["Abyssinian"], names, class_map={"Abyssinian": "tabbby_cat"})


def test_softmax_and_probabilities():
    z = np.array([[0.0, np.log(3.0)], [1000.0, 1000.0]])
    np.testing.assert_allclose(softmax(z), [[0.25, 0.75], [0.5, 0.5]])
    p = np.array([0.2, 0.8])
    assert as_probabilities(p) is not None and np.allclose(as_probabilities(p), p)
    np.testing.assert_allclose(as_probabilities(np.array([0.0, np.log(3.0)])), [0.25, 0.75])
