"""Decode once: one pass over photos as fine-tuning's epochs see them, from the files (the
baseline: tf.data decoding each photo with the project's decoder) against the decoded-pixel cache
(transfer_lab.data.pixels, filled once), in one run.

    python bench/pixel_cache.py                       # 300 cats + 300 dogs at 160 px, 3 passes each
    python bench/pixel_cache.py --per-class 500 --size 224 --passes 5

Prints the seconds per pass of both (baseline first pass = what every fine-tuning epoch paid for
without tf.data's in-memory cache), the one-off cost of filling the cache, and the ratio.
Nothing is written into the checkout (the cache goes to a temporary folder).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRANSFER_LAB_SHARED", ROOT.parent / "shared")).resolve()
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=300)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--passes", type=int, default=3)
    a = ap.parse_args()

    from transfer_lab.data.imaging import ImageRejected, inspect_image
    from transfer_lab.data.pixels import PixelCache
    from transfer_lab.data.tfdata import image_dataset

    paths = []
    for cls in ("Cat", "Dog"):
        found = 0
        for p in sorted((SHARED / "data" / "PetImages" / cls).glob("*.jpg")):
            try:
                inspect_image(p)
            except (ImageRejected, OSError):
                continue
            paths.append(str(p))
            found += 1
            if found == a.per_class:
                break

    def one_pass(ds) -> float:
        t = time.perf_counter()
        for _ in ds:
            pass
        return time.perf_counter() - t

    files = image_dataset(paths, image_size=a.size, batch_size=a.batch_size, shuffle=True, seed=0)
    base = [one_pass(files) for _ in range(a.passes)]
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        px = PixelCache(tmp, a.size).pixels(paths)
        fill = time.perf_counter() - t
        t = time.perf_counter()
        PixelCache(tmp, a.size).pixels(paths)
        reread = time.perf_counter() - t
        cached = image_dataset(paths, image_size=a.size, batch_size=a.batch_size, shuffle=True, seed=0, pixels=px)
        ours = [one_pass(cached) for _ in range(a.passes)]
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    print(f"{len(paths)} photos at {a.size} px, batch {a.batch_size}, load average {os.getloadavg()[0]:.1f}")
    print(f"baseline (decode the files every pass): {med(base):.2f} s a pass (passes: {', '.join(f'{x:.2f}' for x in base)})")
    print(f"ours (pixel cache):                      {med(ours):.3f} s a pass (passes: {', '.join(f'{x:.3f}' for x in ours)})")
    print(f"  filling the cache once: {fill:.2f} s; reading it back in a later run: {reread:.2f} s")
    print(f"ratio baseline / ours per pass: {med(base) / med(ours):.1f}x")


if __name__ == "__main__":
    main()
