"""What the perceptual hash adds to ingestion (issue 17: at most 20%): data_ingestion's check and
split nodes on photos of ../shared, with the hash (as shipped) and without it (photo_hash
replaced by a stub that returns None, so nothing is hashed or grouped), alternated ``--rounds``
times; the median of each is compared.

    python bench/ingestion_hash.py                          # all 2,000 PetImages + 3,237 Oxford photos, 2 threads
    python bench/ingestion_hash.py --source ../shared/data/PetImages --workers 2 --rounds 3
    python bench/ingestion_hash.py --kedro               # the whole `kedro run --pipelines=data_ingestion`

Prints wall seconds and process CPU seconds of both, the near-duplicates found and the overhead.
Reads ../shared only; writes nothing into the checkout (--kedro runs in a temporary folder).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRANSFER_LAB_SHARED", ROOT.parent / "shared")).resolve()
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", action="append", default=None,
                    help="a photo folder (repeatable); default: PetImages and the Oxford images of ../shared")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kedro", action="store_true",
                    help="time `kedro run --pipelines=data_ingestion` (a KedroSession on a temporary copy of "
                         "conf/, in-process) instead of the two nodes")
    a = ap.parse_args()

    import logging

    os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported
    from transfer_lab.data import neardup
    from transfer_lab.params.data import DataParams
    from transfer_lab.pipelines.data_ingestion import nodes

    logging.disable(logging.WARNING)
    sources = a.source or [str(SHARED / "data" / "PetImages"), str(SHARED / "data" / "oxford-iiit-pet")]
    real_hash = neardup.photo_hash

    def ingest(source: str, hashed: bool) -> tuple[float, float, int, int]:
        nodes.neardup.photo_hash = real_hash if hashed else (lambda image: None)
        data = DataParams(source=source, labels="species", workers=a.workers)
        wall, cpu = time.perf_counter(), time.process_time()
        if a.kedro:
            project.run("data_ingestion", {"data.source": source, "data.labels": "species", "data.workers": a.workers})
            manifest = pd.read_csv(project.out("data/03_primary/manifest.csv"))
            near = pd.read_csv(project.out("data/08_reporting/near_duplicates.csv"))
        else:
            folder, refused = nodes.acquire_source(data)
            images, rejected = nodes.check_images(folder, refused, data)
            manifest, _, _, near = nodes.split_images(images, rejected, data)
        out = (time.perf_counter() - wall, time.process_time() - cpu, len(manifest), len(near))
        nodes.neardup.photo_hash = real_hash
        return out

    project = None
    if a.kedro:
        import tempfile

        import pandas as pd

        sys.path.insert(0, str(ROOT))
        os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
        os.environ.setdefault("DO_NOT_TRACK", "1")
        tmp = Path(tempfile.mkdtemp(prefix="ingestion_hash_"))
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
        from tests.conftest import KedroProject  # the tests' throw-away project copy

        project = KedroProject(tmp / "project")

    for source in sources:
        runs: dict[bool, list[tuple[float, float, int, int]]] = {True: [], False: []}
        ingest(source, False)  # warm the file cache
        for _ in range(a.rounds):
            for hashed in (False, True):
                runs[hashed].append(ingest(source, hashed))
        med = {h: (statistics.median(r[0] for r in runs[h]), statistics.median(r[1] for r in runs[h])) for h in runs}
        n, found = runs[True][0][2], runs[True][0][3]
        print(f"{source}: {n} photos, {a.workers} threads, {a.rounds} rounds (medians)")
        print(f"  without hash: {med[False][0]:.2f} s wall, {med[False][1]:.2f} s CPU")
        print(f"  with hash:    {med[True][0]:.2f} s wall, {med[True][1]:.2f} s CPU; {found} photos in near-duplicate groups")
        print(f"  overhead: {100 * (med[True][0] / med[False][0] - 1):+.1f}% wall, "
              f"{100 * (med[True][1] / med[False][1] - 1):+.1f}% CPU")


if __name__ == "__main__":
    main()
