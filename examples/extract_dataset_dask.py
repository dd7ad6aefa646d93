"""Priors of a whole data set on a Dask cluster: one schema .npz per input video, resumable.

    pip install 'bitsr[dataset]'                      # dask[distributed]
    python examples/extract_dataset_dask.py VIDEOS/ PRIORS/              # a LocalCluster here
    python examples/extract_dataset_dask.py VIDEOS/ PRIORS/ --scheduler tcp://host:8786

Every HEVC/H.264 file under VIDEOS (raw streams, MP4, MOV, MKV; sub-folders included) becomes
PRIORS/<same relative path>.priors.npz, in the schema of docs/schema.md (what ``bitsr extract``
writes). Each file is one Dask task running :func:`bitsr.io.npz.save_priors`, which writes
atomically: an output is complete or absent. Running the command again after a stop (or a
lost worker) skips the outputs that exist and extracts only the rest; ``--overwrite`` redoes
all. A damaged or unreadable file is reported and does not stop the others (exit code 1).

Without ``--scheduler`` a LocalCluster with one single-threaded worker process per core runs
the tasks (``--workers`` to change); with it, the workers of an existing cluster do, and they
must see the same paths (a shared file system). ``--threads`` parse one file on several
threads inside a task, for data sets of a few long videos.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bitsr.io.formats import VIDEO_EXTENSIONS  # noqa: E402


def find_videos(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def output_of(src: Path, root: Path, out_dir: Path) -> Path:
    return out_dir / src.relative_to(root).with_suffix(".priors.npz")


def extract_one(src: str, dst: str, threads: int) -> dict:
    """One task (runs on a worker): the priors of src into dst."""
    from bitsr.io.npz import save_priors

    os.makedirs(os.path.dirname(dst), exist_ok=True)
    return save_priors(src, dst, threads=threads)


def extract_dataset(root: Path, out_dir: Path, client, *, threads: int = 1, overwrite: bool = False) -> dict:
    """Submits the files whose output is missing; returns {input: result dict or error text}."""
    from distributed import as_completed

    todo = [(s, output_of(s, root, out_dir)) for s in find_videos(root)]
    todo = [(s, d) for s, d in todo if overwrite or not d.exists()]
    futures = {client.submit(extract_one, str(s), str(d), threads, key=f"priors-{s}", pure=False): s
               for s, d in todo}
    results = {}
    for fut in as_completed(futures):
        src = futures[fut]
        try:
            results[str(src)] = fut.result()
        except Exception as e:  # noqa: BLE001 - reported per file; the others go on
            results[str(src)] = f"{type(e).__name__}: {e}"
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("videos", type=Path, help="folder of video files (searched recursively)")
    ap.add_argument("out", type=Path, help="folder for the .priors.npz files")
    ap.add_argument("--scheduler", help="address of a running Dask scheduler (default: a LocalCluster here)")
    ap.add_argument("--workers", type=int, default=0, help="LocalCluster worker processes (default: one per core)")
    ap.add_argument("--threads", type=int, default=1, help="parser threads per file (default 1)")
    ap.add_argument("--overwrite", action="store_true", help="extract again the files whose output exists")
    args = ap.parse_args(argv)
    if not args.videos.is_dir():
        ap.error(f"{args.videos}: not a folder")
    from distributed import Client, LocalCluster

    if args.scheduler:
        client = Client(args.scheduler)
    else:
        n = args.workers or os.cpu_count() or 1
        client = Client(LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None))
    with client:
        results = extract_dataset(args.videos, args.out, client, threads=args.threads, overwrite=args.overwrite)
    failed = {k: v for k, v in results.items() if isinstance(v, str)}
    done = len(results) - len(failed)
    pictures = sum(v["pictures"] for v in results.values() if not isinstance(v, str))
    print(f"extracted {done} file(s), {pictures} pictures, into {args.out}"
          + (f"; {len(failed)} failed" if failed else ""))
    for src, err in sorted(failed.items()):
        print(f"  {src}: {err}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
