"""`make bench`: run the benchmark suite and write its results to bench/results/ (JSON) and stdout (markdown).

CPU loop overheads (bench/cpu.py), import time (bench/import_time.py) and, where a CUDA GPU is present,
the GPU benchmarks (bench/gpu.py). The docs' Performance page is built from the JSON files, never typed by hand.

    python bench/run.py [--reps 7] [--quick]
"""
import argparse, json, sys
from datetime import date
from pathlib import Path
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import cpu, import_time, loader, loop_overhead

def main(reps=7, quick=False):
    out = HERE / 'results'; out.mkdir(exist_ok=True)
    configs = ['tiny'] if quick else ['tiny', 'small']
    print(f"## CPU ({cpu.machine()['cpu']}, one thread, torch {torch.__version__})\n")
    rows = [r for c in configs for r in cpu.run_config(c, reps)]
    cpu.print_table(rows)
    (out / 'cpu.json').write_text(json.dumps({'date': str(date.today()), 'machine': cpu.machine(), 'reps': reps, 'rows': rows}, indent=1))
    print("\n## The loop's own overhead per step (a 2->2 linear model, batches of 2)\n")
    lo_ = loop_overhead.main(reps * 2 + 1)
    (out / 'loop_overhead.json').write_text(json.dumps({'date': str(date.today()), **lo_}, indent=1))
    print("\n## Fast loader: iterating one epoch\n")
    lo = loader.main(reps)
    (out / 'loader.json').write_text(json.dumps({'date': str(date.today()), **lo}, indent=1))
    print("\n## Import time\n")
    imp = import_time.main(5 if quick else 15)
    for k, v in imp.items(): print(f"- {k}: {v:.3f}")
    (out / 'import.json').write_text(json.dumps({'date': str(date.today()), **imp}, indent=1))
    if torch.cuda.is_available():
        import gpu
        print("\n## GPU\n")
        grows = gpu.main(reps, quick)
        gpu.print_table(grows)
        (out / 'gpu.json').write_text(json.dumps({'date': str(date.today()), 'device': torch.cuda.get_device_name(),
                                                  'torch': torch.__version__, 'rows': grows, 'sync_sites': gpu.SYNC_SITES}, indent=1))
    else: print("\n(no CUDA GPU here: GPU results in bench/results/gpu.json come from `python bench/gpu.py --json ...` on a GPU machine)")

if __name__ == '__main__':
    p = argparse.ArgumentParser(); p.add_argument('--reps', type=int, default=7); p.add_argument('--quick', action='store_true')
    a = p.parse_args()
    main(a.reps, a.quick)
