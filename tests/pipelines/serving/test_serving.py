"""The serving model on a tiny classifier: base64 JPEG bytes in, the right label and the
unfamiliar flag out; bad records refused naming the problem; the inference pipeline gives the
same answers; the registry's champion is the best test accuracy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.pipelines.serving.tiny import BLUE, CLASSES, GREEN, RED, b64, jpeg_bytes, photo, tiny_stats, \
    write_artifacts


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The pyfunc model saved with mlflow and loaded back as mlflow would serve it."""
    import mlflow

    from transfer_lab.serving.pyfunc import PIP_REQUIREMENTS, TransferLabModel

    tmp = tmp_path_factory.mktemp("pyfunc")
    artifacts = write_artifacts(tmp / "art", max_pixels=200_000)
    mlflow.pyfunc.save_model(str(tmp / "model"), python_model=TransferLabModel(), artifacts=artifacts,
                             pip_requirements=PIP_REQUIREMENTS)
    return mlflow.pyfunc.load_model(str(tmp / "model"))


def test_base64_jpegs_get_the_right_label_and_the_flag(served):
    records = [{"image": b64(jpeg_bytes(photo(RED, 7)))}, {"image": b64(jpeg_bytes(photo(BLUE, 8), "PNG"))},
               {"image": "data:image/jpeg;base64," + b64(jpeg_bytes(photo(GREEN, 9)))}]
    out = served.predict(pd.DataFrame(records))
    assert list(out["label"])[:2] == ["cat", "dog"]
    assert list(out["unfamiliar"]) == [False, False, True]
    assert all(abs(sum(p.values()) - 1) < 1e-5 and set(p) == set(CLASSES) for p in out["probabilities"])
    assert out["probability"][0] == pytest.approx(out["probabilities"][0]["cat"])
    assert [t["label"] for t in out["top_k"][1]] == ["dog", "cat"]


@pytest.mark.parametrize("value, first_words", [
    ("%%% not base64 %%%", "Record 0 (`image`): bad_base64"),
    (b64(b"just some text, not a picture"), "Record 0 (`image`): not_an_image"),
    (b64(jpeg_bytes(photo(RED, 1))[:300]), "Record 0 (`image`): "),
    (b64(jpeg_bytes(photo(RED, 1, size=(600, 400)))), "Record 0 (`image`): too_large"),
])
def test_bad_records_are_refused_naming_the_problem(served, value, first_words):
    from mlflow.exceptions import MlflowException

    from transfer_lab.serving.pyfunc import InvalidImage

    with pytest.raises(InvalidImage) as info:
        served.predict(pd.DataFrame([{"image": b64(jpeg_bytes(photo(BLUE, 2)))}, {"image": value}]).iloc[1:])
    exc = info.value
    assert isinstance(exc, MlflowException) and exc.get_http_status_code() == 400
    assert exc.message.splitlines()[0].startswith(first_words)
    if first_words.endswith("too_large"):
        assert "200,000" in exc.message
    # mlflow's scoring server rewrites an MlflowException's message (prefixing the whole request): ours stays
    exc.message = f"Failed to predict data '{value}'. \nError: {exc.message}"
    assert exc.message.startswith("Record 0")


def test_missing_image_field(served):
    from transfer_lab.serving.pyfunc import InvalidImage

    with pytest.raises(InvalidImage, match="No `image` field"):
        served.predict(pd.DataFrame([{"img": "x"}]))


def test_inference_pipeline_gives_the_served_answers(tmp_path, served):
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner

    from tests.pipelines.adversarial.test_pipeline import deferred
    from tests.pipelines.serving.tiny import tiny_classifier
    from transfer_lab.params.data import DataParams
    from transfer_lab.params.inference import InferenceParams
    from transfer_lab.pipelines.inference import create_pipeline

    src = tmp_path / "photos"
    src.mkdir()
    colors = {"a_red.jpg": RED, "b_blue.jpg": BLUE, "c_green.png": GREEN}
    for name, c in colors.items():
        (src / name).write_bytes(jpeg_bytes(photo(c, 3), "PNG" if name.endswith("png") else "JPEG"))
    (src / "d_notes.txt").write_text("not a photo")
    data = {"params:inference": InferenceParams(model="head", source=str(src), top_k=2), "params:data": DataParams(),
            "classifier_config": {"class_names": CLASSES}, "unfamiliar_stats@npz": tiny_stats(),
            "head_classifier@lazy": deferred(tiny_classifier()),
            "finetuned_classifier@lazy": deferred(missing=tmp_path / "finetuned_classifier.keras")}
    catalog = DataCatalog({k: MemoryDataset(v, copy_mode="assign") for k, v in data.items()})
    catalog["inference_predictions"] = MemoryDataset(copy_mode="assign")
    SequentialRunner().run(create_pipeline(), catalog)
    table = catalog["inference_predictions"].load()
    assert [p.rsplit("/", 1)[1] for p in table["source"]] == ["a_red.jpg", "b_blue.jpg", "c_green.png", "d_notes.txt"]
    assert list(table["label"][:2]) == ["cat", "dog"] and list(table["unfamiliar"][:3]) == [False, False, True]
    assert table["error"][3].startswith("not_an_image") and table["error"][:3].tolist() == ["", "", ""]
    served_out = served.predict(pd.DataFrame([{"image": b64((src / n).read_bytes())} for n in colors]))
    np.testing.assert_allclose(table["p_cat"][:3].to_numpy(float), served_out["probabilities"].map(
        lambda p: p["cat"]).to_numpy(float), atol=1e-6)
    assert table["label"][:3].tolist() == served_out["label"].tolist()
    np.testing.assert_allclose(table["unfamiliar_score"][:3].to_numpy(float), served_out["unfamiliar_score"], atol=1e-5)


def test_base64_csv_source(tmp_path):
    from tests.pipelines.adversarial.test_pipeline import deferred
    from tests.pipelines.serving.tiny import tiny_classifier
    from transfer_lab.params.inference import InferenceParams
    from transfer_lab.pipelines.inference.nodes import read_source

    pd.DataFrame({"id": ["r", "bad"], "image": [b64(jpeg_bytes(photo(RED, 1))), "@@"]}).to_csv(tmp_path / "rows.csv",
                                                                                             index=False)
    rows = read_source(InferenceParams(model="head", source=str(tmp_path / "rows.csv")),
                       deferred(missing=tmp_path / "x.keras"),
                       deferred(tiny_classifier()))
    assert rows["source"].tolist() == ["r", "bad"] and rows["data"][0][:3] == b"\xff\xd8\xff"
    assert rows["error"][1].startswith("bad_base64")


def test_champion_is_the_best_test_accuracy(tmp_path, monkeypatch):
    import mlflow

    from transfer_lab.serving import pyfunc

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'reg.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'reg.db'}")
    client = mlflow.MlflowClient()
    name = pyfunc.registered_name("PetImages-species")
    assert name == "transfer-lab-PetImages-species"
    client.create_registered_model(name)
    exp = client.create_experiment("champion-test")  # explicit: no active experiment of another store is used
    champions = []
    for acc in (0.91, 0.97, 0.95):
        with mlflow.start_run(experiment_id=exp) as run:
            mlflow.log_text("x", "model/x.txt")
        v = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
        champions.append(pyfunc.tag_and_crown(name, str(v.version), {"accuracy": acc, "n_test": 10}))
    assert champions == ["1", "2", "2"]
    assert str(client.get_model_version_by_alias(name, "champion").version) == "2"
    assert client.get_model_version(name, "3").tags["test_accuracy"] == "0.95"
    mlflow.set_tracking_uri(None)


def test_evaluation_counts_and_shows_the_unfamiliar_photos(tmp_path):
    from matplotlib.figure import Figure

    from tests.pipelines.adversarial.test_pipeline import deferred
    from tests.pipelines.serving.tiny import tiny_classifier
    from transfer_lab.params.evaluation import EvaluationParams
    from transfer_lab.pipelines.evaluation.nodes import flag_unfamiliar

    paths = []
    for name, c in (("red.jpg", RED), ("blue.jpg", BLUE), ("green.jpg", GREEN), ("green2.jpg", GREEN)):
        (tmp_path / name).write_bytes(jpeg_bytes(photo(c, len(paths))))
        paths.append(str(tmp_path / name))
    scored = pd.DataFrame({"path": paths + [str(tmp_path / "bad.jpg")], "label": "", "error": [""] * 4 + ["corrupt"]})
    params = EvaluationParams(model="head", n_worst=4)
    out, fig = flag_unfamiliar(scored, deferred(tiny_stats()), params, deferred(tiny_classifier()))
    assert out["n_unfamiliar"] == 2 and {r["path"].rsplit("/", 1)[1] for r in out["unfamiliar"]} == {"green.jpg",
                                                                                                     "green2.jpg"}
    assert isinstance(fig, Figure) and len([a for a in fig.axes if a.images]) == 2
    none, _ = flag_unfamiliar(scored, deferred(missing=tmp_path / "unfamiliar.npz"), params, deferred(tiny_classifier()))
    assert none["n_unfamiliar"] is None


def test_a_separate_feature_model_gives_the_same_answers():
    """A fine-tuned classifier keeps head_training's features for the flag (feature_model)."""
    from tests.pipelines.serving.tiny import tiny_classifier
    from transfer_lab.serving.predictor import Predictor, pool_model

    clf = tiny_classifier()
    data = [jpeg_bytes(photo(c, 40 + i)) for i, c in enumerate((RED, BLUE, GREEN))]
    one = Predictor(clf, tiny_stats(), CLASSES).predict_bytes(data)
    two = Predictor(clf, tiny_stats(), CLASSES, feature_model=pool_model(tiny_classifier())).predict_bytes(data)
    assert [r["label"] for r in one] == [r["label"] for r in two] and [r["unfamiliar"] for r in two] == [False, False,
                                                                                                      True]
    np.testing.assert_allclose([r["unfamiliar_score"] for r in one], [r["unfamiliar_score"] for r in two], atol=1e-6)
