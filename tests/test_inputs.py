"""The tf.data input over the manifest: order, labels, mirror images, and no autotuning."""

from __future__ import annotations

import numpy as np

from transfer_lab.data.imaging import load_rgb
from transfer_lab.data.tfdata import image_dataset


def test_batches_keep_order_labels_and_mirror(tmp_path, make_image):
    paths = []
    for i in range(5):
        p = tmp_path / f"img{i}.jpg"
        make_image(p, size=(40 + 7 * i, 30 + 5 * i), seed=i)
        paths.append(str(p))
    expected = np.stack([load_rgb(p, 24).astype(np.float32) for p in paths])

    batches = list(image_dataset(paths, [3, 1, 4, 1, 5], image_size=24, batch_size=2))
    assert [len(b[0]) for b in batches] == [2, 2, 1]
    images = np.concatenate([b[0].numpy() for b in batches])
    labels = np.concatenate([b[1].numpy() for b in batches])
    np.testing.assert_array_equal(images, expected)
    np.testing.assert_array_equal(labels, [3, 1, 4, 1, 5])

    mirrored = np.concatenate([b.numpy() for b in image_dataset(paths, image_size=24, batch_size=4, flip=True)])
    np.testing.assert_array_equal(mirrored, expected[:, :, ::-1])


def test_autotuning_is_off(tmp_path, make_image):
    # With tf.data autotuning on, deleting an iterator waits for the autotuner's current sleep
    # (up to seconds at the end of every pass); the input pipeline runs with fixed parallelism.
    p = tmp_path / "a.png"
    make_image(p, size=(20, 20), fmt="PNG")
    ds = image_dataset([str(p)], [0], image_size=16, batch_size=1, shuffle=True, cache=True, repeat=False)
    assert ds.options().autotune.enabled is False
    assert next(iter(ds))[0].shape == (1, 16, 16, 3)


def test_balanced_class_weights_make_every_class_count_the_same():
    from transfer_lab.data.tfdata import balanced_class_weights

    labels = [0] * 112 + [1] * 6 + [2] * 14
    w = balanced_class_weights(labels, 3)
    totals = [w[c] * labels.count(c) for c in (0, 1, 2)]
    np.testing.assert_allclose(totals, totals[0])
    np.testing.assert_allclose(sum(totals), len(labels))  # mean weight per sample is 1
    assert w[1] > w[2] > 1 > w[0]
    assert set(balanced_class_weights(labels, 4)) == {0, 1, 2}  # a class without samples gets no weight


def test_array_dataset_epochs_are_seeded_permutations():
    from transfer_lab.data.tfdata import array_dataset

    x = np.arange(10, dtype=np.float32)[:, None]
    y = np.arange(10)
    ds, steps = array_dataset(x, y, batch_size=4, shuffle=True, seed=3)
    assert steps == 3

    def epochs(ds, k):
        it = iter(ds)
        return [np.concatenate([next(it)[1].numpy() for _ in range(steps)]) for _ in range(k)]

    first = epochs(ds, 3)
    for order in first:
        assert sorted(order.tolist()) == list(range(10))  # each epoch: every sample once
    assert not all(np.array_equal(first[0], o) for o in first[1:])  # reshuffled
    again = epochs(array_dataset(x, y, batch_size=4, shuffle=True, seed=3)[0], 3)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))  # same seed, same orders
    plain, _ = array_dataset(x, y, batch_size=4)
    assert np.concatenate([b[1].numpy() for b in plain]).tolist() == list(range(10))


def test_cached_and_shuffled_dataset_takes_a_new_order_every_pass(tmp_path, make_image):
    paths = []
    for i in range(12):
        p = tmp_path / f"img{i}.png"
        make_image(p, size=(12, 12), fmt="PNG", seed=i)
        paths.append(str(p))
    ds = image_dataset(paths, list(range(12)), image_size=8, batch_size=5, shuffle=True, cache=True, seed=3)
    orders = [np.concatenate([y.numpy() for _, y in ds]).tolist() for _ in range(3)]
    for order in orders:
        assert sorted(order) == list(range(12))
    assert orders[0] != orders[1] and orders[1] != orders[2]
    again = image_dataset(paths, list(range(12)), image_size=8, batch_size=5, shuffle=True, cache=True, seed=3)
    assert np.concatenate([y.numpy() for _, y in again]).tolist() == orders[0]
