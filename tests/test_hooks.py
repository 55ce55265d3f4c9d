"""The project hook: misspelt --params refused before anything runs; the MLflow experiment named
after the data set, also for a pipeline run on its own after data_ingestion."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from transfer_lab.hooks import UnknownParameterError, experiment_name, unknown_parameters
from transfer_lab.params.base import Params


class _Split(Params):
    where = "data.split"
    train: float = 0.7


class _Data(Params):
    where = "data"
    source: str = ""
    split: _Split = _Split()


def test_unknown_section_named_with_did_you_mean():
    sections: dict[str, type[BaseModel]] = {"data": _Data, "head_training": _Data}
    (msg,) = unknown_parameters({"head_trainin": {"l2": 0.5}}, sections)
    assert msg.startswith("head_trainin is not a parameter. Did you mean head_training?")
    assert "Known sections: data, head_training" in msg and "--params" in msg


def test_nested_keys_checked_against_the_models_and_the_yaml():
    sections = {"data": _Data}
    assert unknown_parameters({"data": {"source": "x", "split": {"train": 0.5}}}, sections) == []
    (msg,) = unknown_parameters({"data": {"split": {"trian": 0.5}}}, sections)
    assert "data.split.trian is not a parameter" in msg and "Did you mean data.split.train?" in msg
    # A section that has no model is checked against its YAML keys.
    conf = {"runtime": {"strategy": "auto"}}
    assert unknown_parameters({"runtime": {"strategy": "none"}}, sections, conf) == []
    (msg,) = unknown_parameters({"runtime": {"stratgy": "none"}}, sections, conf)
    assert "runtime.stratgy" in msg and "runtime.strategy" in msg


@pytest.mark.slow
def test_misspelt_section_refused_before_any_node_runs(kedro_project):
    with pytest.raises(UnknownParameterError, match=r"head_trainin is not a parameter\. Did you mean head_training\?"):
        kedro_project.run("data_ingestion", {"head_trainin.l2": 0.5})
    assert not any(kedro_project.out("data/03_primary").iterdir())


def test_experiment_names():
    assert experiment_name("/x/PetImages", "breed") == "PetImages-species"
    assert experiment_name("https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz", "breed") == \
        "oxford-iiit-pet-breed"


@pytest.mark.slow
def test_a_pipeline_alone_logs_to_the_experiment_of_the_data_it_works_on(kedro_project, make_image, tmp_path):
    """data_ingestion on .../PetImages, then a pipeline that does not ingest (its own --params do not
    name the data): both runs land in the PetImages-species experiment."""
    import mlflow

    src = tmp_path / "PetImages"
    for cls in ("Cat", "Dog"):
        for i in range(6):
            make_image(src / cls / f"{i}.jpg", seed=i + (40 if cls == "Dog" else 0))
    kedro_project.run("data_ingestion", {"data.source": str(src)})
    exp = mlflow.get_experiment_by_name("PetImages-species")
    assert exp is not None
    before = len(mlflow.search_runs([exp.experiment_id]))
    kedro_project.run("feature_extraction", {"backbone.weights": "none", "backbone.image_size": 32,
                                             "backbone.alpha": 0.35})
    runs = mlflow.search_runs([exp.experiment_id])
    assert len(runs) == before + 1
    assert "feature_extraction" in set(runs["tags.mlflow.runName"])
