"""How much `import fastcb.all` adds to `import torch`, in fresh interpreters (medians of interleaved runs).

    python bench/import_time.py [--reps 15]
"""
import argparse, json, statistics, subprocess, sys

def time_import(stmt):
    code = f"import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout)

def main(reps=15):
    torch_only, with_fastcb = [], []
    for _ in range(reps):
        torch_only.append(time_import('import torch'))
        with_fastcb.append(time_import('import torch; import fastcb.all'))
    res = {'import torch (s)': statistics.median(torch_only), 'import torch + fastcb.all (s)': statistics.median(with_fastcb)}
    res['added by fastcb.all (s)'] = res['import torch + fastcb.all (s)'] - res['import torch (s)']
    return res

if __name__ == '__main__':
    p = argparse.ArgumentParser(); p.add_argument('--reps', type=int, default=15); p.add_argument('--json')
    a = p.parse_args()
    res = main(a.reps)
    for k, v in res.items(): print(f"{k}: {v:.3f}")
    if a.json: json.dump(res, open(a.json, 'w'), indent=1)
