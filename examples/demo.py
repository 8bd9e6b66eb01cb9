"""`make demo`: train a ResNet-18 (from scratch, on the CPU) on the embedded handwritten digits with fastcb.

    python examples/demo.py [--epochs 6] [--size 32] [--arch resnet18] [--threads 1] [--out demo_output]

`cnn_learner` builds a ResNet-18 whose first convolution takes the digits' single channel and whose head has
10 outputs; the default callbacks print one row per epoch (progress bars in a terminal) with the default metric,
accuracy, and `fit_one_cycle` adds the 1cycle schedule of learning rate and momentum. The script writes the loss
curve and a grid of validation images with their predicted and actual labels as PNG files, prints the final
validation accuracy, and exits with status 1 if it is below 97% (it reaches about 99%).

The 8x8 digits are upsampled to 32x32 (`digits_dls(size=32)`): a ResNet divides its input by 32, so at 8x8 most of
the network would work on a single pixel (it plateaus near 97% there). It takes about 50 s on one CPU thread.
One thread is the default: two OpenMP threads on this 2-core machine took 28 s when it was idle, but several
times longer than one thread (4.8 minutes against 1) when another process was using a core; pass --threads 2
on an idle machine.
"""
import argparse, sys, time
from pathlib import Path
import torch
from fastcb.all import *
from fastcb.vision.learner import cnn_learner

def main(epochs=6, size=32, arch='resnet18', lr=5e-3, bs=64, out_dir='demo_output', threads=1, threshold=0.97):
    torch.manual_seed(42)
    torch.set_num_threads(threads)
    dls = digits_dls(bs=bs, size=size, device='cpu')
    learn = cnn_learner(dls, arch, pretrained=False)   # default metric: accuracy
    print(f"{arch} (from scratch) on {len(dls.train_ds)} training and {len(dls.valid_ds)} validation digits at "
          f"{size}x{size}, {epochs} epochs, {torch.get_num_threads()} CPU thread(s)")
    t0 = time.perf_counter()
    learn.fit_one_cycle(epochs, lr)
    dt = time.perf_counter() - t0
    acc = learn.recorder.values[-1][2]

    import matplotlib
    matplotlib.use('Agg')
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ax = learn.recorder.plot_loss()
    ax.figure.savefig(out / 'loss.png', dpi=100, bbox_inches='tight')
    axs = learn.show_results(n=16)
    axs.flat[0].figure.savefig(out / 'results.png', dpi=100, bbox_inches='tight')

    print(f"\nTrained for {epochs} epochs in {dt:.1f} s; final validation accuracy {acc:.4f} "
          f"({'>=' if acc >= threshold else 'below'} {threshold:.2f})")
    print(f"Loss curve and results grid written to {out.resolve()}/ (loss.png, results.png)")
    return acc

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--epochs', type=int, default=6)
    p.add_argument('--size', type=int, default=32)
    p.add_argument('--arch', default='resnet18')
    p.add_argument('--lr', type=float, default=5e-3)
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--out', default='demo_output')
    p.add_argument('--threads', type=int, default=1)
    a = p.parse_args()
    acc = main(a.epochs, a.size, a.arch, a.lr, a.bs, a.out, a.threads)
    sys.exit(0 if acc >= 0.97 else 1)
