"""The ``data`` parameters (DataParams): every rule, its message, and the YAML's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from transfer_lab.data import layouts
from transfer_lab.params import SECTIONS
from transfer_lab.params.data import DataParams, Layout, Labels, SplitParams

CONF = Path(__file__).resolve().parents[3] / "conf" / "base" / "parameters_data_ingestion.yml"


def test_registered_and_defaults_are_the_yaml():
    assert SECTIONS["data"] is DataParams
    yaml_data = yaml.safe_load(CONF.read_text())["data"]
    assert DataParams().model_dump() == yaml_data
    assert DataParams.model_validate(yaml_data) == DataParams()


def test_layout_and_labels_are_the_ones_layouts_knows():
    from typing import get_args

    assert set(get_args(Layout)) == set(layouts.LAYOUTS) - {"unlabelled"}
    assert set(get_args(Labels)) == set(layouts.LABEL_MODES)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"source": ""}, r"data.source is empty"),
        ({"layout": "coco"}, r"data.layout=coco is not valid: .*'folders'.*--params \"data.layout="),
        ({"labels": "colour"}, r"data.labels=colour is not valid: .*'breed' or 'species'"),
        ({"split": {"train": 0.7, "val": 0.2, "test": 0.2}}, r"data.split fractions sum to 1.1, not 1"),
        ({"split": {"train": 0.0, "val": 0.5, "test": 0.5}}, r"data.split.train=0: .*train > 0"),
        ({"split": {"train": 1.2, "val": -0.1, "test": -0.1}}, r"data.split.val=-0.1 is not valid"),
        ({"split": {"train": 0.7, "val": 0.15, "test": 0.15, "seed": "x"}}, r"data.split.seed=x is not valid"),
        ({"min_side": 3.5}, r"data.min_side=3.5 is not valid: .*whole number"),
        ({"min_side": 0}, r"data.min_side=0 is not valid"),
        ({"max_pixels": "many"}, r"data.max_pixels=many is not valid"),
        ({"workers": 0}, r"data.workers=0 is not valid"),
        ({"workers": True}, r"data.workers=true is not valid: it must be a whole number"),
        ({"min_side": 100, "max_pixels": 99}, r"leave no usable image size"),
    ],
)
def test_a_wrong_value_is_refused_naming_the_key(change, message):
    with pytest.raises(ValidationError, match=message):
        DataParams.model_validate(change)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"colour": 1}, r"data.colour is not a parameter\. Known in data: cache_dir, "),
        ({"sourse": "."}, r"data.sourse is not a parameter\. Did you mean data.source\?"),
        ({"split": {"train": 0.8, "val": 0.2, "tset": 0.0}},
         r"data.split.tset is not a parameter\. Did you mean data.split.test\?.*parameters_data_ingestion.yml"),
    ],
)
def test_an_unknown_key_is_refused_with_did_you_mean(change, message):
    with pytest.raises(ValidationError, match=message):
        DataParams.model_validate(change)


def test_command_line_values_and_nulls():
    # --params "data.split.train=0.8,data.workers=2" gives strings or numbers; null keeps a default
    data = DataParams.model_validate({"split": {"train": "0.8", "val": "0.1", "test": "0.1", "seed": "3"},
                                      "workers": "2", "labels": "Species", "min_side": None, "checksum": ""})
    assert data.split == SplitParams(train=0.8, val=0.1, test=0.1, seed=3)
    assert data.split.fractions == {"train": 0.8, "val": 0.1, "test": 0.1}
    assert (data.workers, data.thread_count, data.labels, data.min_side, data.checksum) == (2, 2, "species", 32, None)
    assert DataParams(workers=None).thread_count >= 1
    with pytest.raises(ValidationError):  # frozen: a node cannot change the parameters
        data.labels = "breed"
