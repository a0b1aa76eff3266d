"""Hostile inputs, measured: Ctrl-C at random moments of `robust-hpo run`, and a gzip bomb.

    python benchmarks/hostile_inputs.py --interrupts 40 --seed 3

* ``--interrupts N``: N runs of ``robust-hpo run studies/quickstart.toml`` (5000 trials, a fresh output
  folder each), each sent SIGINT after a random delay (half in the first 1.5 s, while the libraries
  load, half up to 10 s, during trials). Prints how each ended: the exit status (130, or death by
  SIGINT, which shells report as 130 too), the number of stderr lines, and any traceback.
* The gzip bomb: a 6 MB ``.gz`` IDX file whose header declares MNIST's training images (47 MB) but
  that inflates to 6 GiB; prints how long ``read_idx`` takes to refuse it and its peak traced memory.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def interrupts(runs: int, seed: int) -> None:
    rng = random.Random(seed)
    outcomes: collections.Counter[str] = collections.Counter()
    with tempfile.TemporaryDirectory(prefix="robust_hpo_interrupts_") as folder:
        for run in range(runs):
            delay = rng.uniform(0.05, 1.5) if run % 2 == 0 else rng.uniform(1.5, 10.0)
            command = [sys.executable, "-m", "robust_hpo.cli", "run", str(REPO / "studies" / "quickstart.toml"),
                       "--n-trials", "5000", "--no-progress", "--storage", f"{folder}/run{run}/study.log",
                       "--output", f"{folder}/run{run}"]
            # SIGINT restored to its default: a background shell job starts with it ignored
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       cwd=REPO, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
            time.sleep(delay)
            if process.poll() is not None:  # finished before the interrupt: not a measurement
                outcomes["finished before the interrupt (not counted)"] += 1
                process.communicate()
                continue
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=120)
            lines = err.strip().splitlines()
            status = "SIGINT" if process.returncode == -signal.SIGINT else str(process.returncode)
            kind = "traceback" if "Traceback" in err else f"{len(lines)} line(s)"
            outcomes[f"exit {status}, {kind}"] += 1
            if "Traceback" in err or len(lines) > 1:
                print(f"run {run} (SIGINT after {delay:.2f} s): exit {status}\n{err[-1500:]}")
    print(f"{runs} interrupted runs:")
    for outcome, count in outcomes.most_common():
        print(f"  {count:3d}  {outcome}")


def gzip_bomb() -> None:
    from robust_hpo.datasets import read_idx
    from robust_hpo.errors import DataFileError

    header = bytes([0, 0, 8, 3]) + struct.pack(">III", 60000, 28, 28)
    member = gzip.compress(bytes(16 << 20), compresslevel=9)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "train-images-idx3-ubyte.gz"
        path.write_bytes(gzip.compress(header) + member * 384)  # 384 × 16 MiB = 6 GiB of zeros
        tracemalloc.start()
        start = time.perf_counter()
        try:
            read_idx(path)
            outcome = "ACCEPTED"
        except DataFileError as exc:
            outcome = f"refused: {exc}"
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"gzip bomb: {path.stat().st_size / 1e6:.1f} MB file inflating to 6 GiB; {outcome}")
        print(f"  {seconds:.2f} s, peak traced memory {peak / 2**20:.0f} MiB (the declared data: 45 MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interrupts", type=int, default=20, help="interrupted runs (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random delays")
    args = parser.parse_args()
    gzip_bomb()
    if args.interrupts:
        interrupts(args.interrupts, args.seed)


if __name__ == "__main__":
    main()
