"""The ``reporting`` pipeline has no parameters: its figures and figures of merit are catalog inputs
(conf/base/catalog_reporting.yml, src/transfer_lab/pipelines/reporting/pipeline.py), so no path is
listed twice. A ``--params "reporting.x=..."`` is refused by the project hook like any unknown section."""
