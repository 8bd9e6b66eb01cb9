"""What `import fastcb.all` costs on top of torch: in each of many fresh interpreters, `import torch` first, then the
time of `import fastcb.all` alone (so the figure cannot come out negative, as a difference of two separately timed
interpreters can). Medians and min-max over the repetitions.

    python bench/import_time.py [--reps 15] [--json bench/results/import.json]
"""
import argparse, json, statistics, subprocess, sys
from datetime import date

CODE = """import time
t0 = time.perf_counter(); import torch; t1 = time.perf_counter()
import fastcb.all; t2 = time.perf_counter()
import sys; print(t1 - t0, t2 - t1, len([m for m in sys.modules if m.startswith('fastcb')]))"""

def one_run():
    "Seconds for `import torch` and for `import fastcb.all` after it, in a fresh interpreter; number of fastcb modules."
    out = subprocess.run([sys.executable, '-c', CODE], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1]), int(out[2])

def main(reps=15):
    runs = [one_run() for _ in range(reps)]
    torch_s, fastcb_s = [r[0] for r in runs], [r[1] for r in runs]
    return {'date': str(date.today()), 'reps': reps, 'fastcb_modules': runs[0][2],
            'import torch (s)': statistics.median(torch_s),
            'import fastcb.all after torch (s)': statistics.median(fastcb_s),
            'fastcb min (s)': min(fastcb_s), 'fastcb max (s)': max(fastcb_s)}

def print_result(res):
    print(f"import torch: {res['import torch (s)']:.3f} s; then import fastcb.all ({res['fastcb_modules']} modules): "
          f"{res['import fastcb.all after torch (s)']:.3f} s (min–max {res['fastcb min (s)']:.3f}–{res['fastcb max (s)']:.3f}; "
          f"medians of {res['reps']} fresh interpreters)")

if __name__ == '__main__':
    p = argparse.ArgumentParser(); p.add_argument('--reps', type=int, default=15); p.add_argument('--json')
    a = p.parse_args()
    res = main(a.reps)
    print_result(res)
    if a.json:
        with open(a.json, 'w') as f: json.dump(res, f, indent=1)
