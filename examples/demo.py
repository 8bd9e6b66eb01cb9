"""`make demo`: train a small CNN on the embedded handwritten digits with fastcb's default callbacks.

Runs on the CPU in well under a minute, prints one line per epoch, writes the loss curve to
demo_output/loss.png and reports the final validation accuracy.
"""
import sys, time
from pathlib import Path
import torch
from torch import nn
from fastcb.all import *

def accuracy(pred, targ): return (pred.argmax(-1) == targ).float().mean()

def small_cnn(n_out=10):
    "Two convolutions and a linear head for 1x8x8 images."
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),   # 8x8 -> 4x4
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, n_out))

def main(out_dir='demo_output', epochs=8):
    torch.manual_seed(42)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    dls = digits_dls(bs=64, device='cpu')
    learn = Learner(dls, small_cnn(), lr=3e-3, metrics=accuracy)
    t0 = time.perf_counter()
    learn.fit(epochs)
    dt = time.perf_counter() - t0
    out = Path(out_dir); out.mkdir(exist_ok=True)
    import matplotlib
    matplotlib.use('Agg')
    ax = learn.recorder.plot_loss()
    ax.figure.savefig(out / 'loss.png', dpi=100, bbox_inches='tight')
    acc = learn.recorder.values[-1][2]
    print(f"\nTrained for {epochs} epochs in {dt:.1f} s; final validation accuracy {acc:.4f}")
    print(f"Plots written to {out.resolve()}/")
    return acc

if __name__ == '__main__':
    acc = main()
    sys.exit(0 if acc > 0.9 else 1)
