"""transfer-lab: transfer learning on images as Kedro pipelines."""

from transfer_lab.runtime import quiet as _quiet

_quiet.silence()

__version__ = "0.1.0"
