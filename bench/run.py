"""`make bench`: run the benchmark suite and write its results to bench/results/ (JSON) and stdout (markdown).

fastcb, fastai, Lightning and the hand-written loop side by side on the CPU, timed and counted (bench/cpu.py); the
loop's own overhead isolated (bench/loop_overhead.py); the in-memory loader (bench/loader.py); import time
(bench/import_time.py); and, where a CUDA GPU is present, the four contenders on the GPU (bench/gpu_peers.py).
The docs' Performance page is built from the JSON files, never typed by hand.

    python bench/run.py [--reps 5] [--quick]
"""
import argparse, json, sys
from datetime import date
from pathlib import Path
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import cpu, import_time, loader, loop_overhead

def main(reps=5, quick=False):
    out = HERE / 'results'; out.mkdir(exist_ok=True)
    print("## fastcb, fastai, Lightning and the hand-written loop on the CPU\n")
    cpu.main(reps, out / 'cpu.json', out / 'calls.json')
    print("\n## The loop's own overhead per step (a 2->2 linear model, batches of 2)\n")
    lo_ = loop_overhead.main(reps * 2 + 1)
    (out / 'loop_overhead.json').write_text(json.dumps({'date': str(date.today()), **lo_}, indent=1))
    print("\n## Fast loader: iterating one epoch\n")
    lo = loader.main(reps)
    (out / 'loader.json').write_text(json.dumps({'date': str(date.today()), **lo}, indent=1))
    print("\n## Import time\n")
    imp = import_time.main(5 if quick else 15)
    import_time.print_result(imp)
    (out / 'import.json').write_text(json.dumps(imp, indent=1))
    if torch.cuda.is_available():
        import gpu_peers
        print("\n## GPU\n")
        res = gpu_peers.main(3, quick)
        gpu_peers.print_table(res)
        (out / 'gpu_peers.json').write_text(json.dumps(res, indent=1))
    else: print("\n(no CUDA GPU here: bench/results/gpu_peers.json comes from `python bench/gpu_peers.py --json ...` on a GPU machine)")

if __name__ == '__main__':
    p = argparse.ArgumentParser(); p.add_argument('--reps', type=int, default=5); p.add_argument('--quick', action='store_true')
    a = p.parse_args()
    main(a.reps, a.quick)
