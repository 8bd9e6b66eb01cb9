"""GPU benchmarks: fastcb's default fit against a hand-written loop doing the same work.

1. MLP 64->64->10, batch 256, 2000 training + 200 validation steps, data resident on the GPU.
2. torchvision ResNet-18 on synthetic 3x32x32 images, batch 512, 200 training + 20 validation steps,
   channels-last, autocast in bf16 (and in fp16 with a gradient scaler and fused Adam).

Both sides compute the same things: the training loss, and validation loss and accuracy. Repetitions are
interleaved, the order alternating (hand, fastcb, fastcb, hand, ...), after a warm-up; medians are reported. Host-device
synchronisations are counted in a separate run with torch.cuda.set_sync_debug_mode('warn').

    python bench/gpu.py [--reps 5] [--json out.json] [--quick]
"""
import argparse, gc, json, statistics, sys, time, warnings
import torch
from torch import nn
import torchvision

from fastcb.all import Learner, DataLoaders, accuracy, MixedPrecision, ChannelsLast

DEV = 'cuda'

def mlp_data(steps, bs=256, seed=0):
    g = torch.Generator(device=DEV).manual_seed(seed)
    x = torch.randn(steps * bs, 64, device=DEV, generator=g)
    y = torch.randint(0, 10, (steps * bs,), device=DEV, generator=g)
    return [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)]

def image_data(steps, bs=512, seed=0):
    g = torch.Generator(device=DEV).manual_seed(seed)
    x = torch.randn(steps * bs, 3, 32, 32, device=DEV, generator=g)
    y = torch.randint(0, 10, (steps * bs,), device=DEV, generator=g)
    return [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)]

def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)).to(DEV)

def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).to(DEV)

def opt_for(dtype):
    return (lambda p, **kw: torch.optim.Adam(p, fused=True, **kw)) if dtype == torch.float16 else torch.optim.Adam

def hand_written(model, train, valid, dtype=None, channels_last=False):
    "The loop a careful PyTorch user writes, tracking training loss and validation loss/accuracy on the device."
    loss_func = nn.CrossEntropyLoss()
    if channels_last: model = model.to(memory_format=torch.channels_last)
    opt = opt_for(dtype)(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler('cuda') if dtype == torch.float16 else None
    ac = (lambda: torch.autocast('cuda', dtype=dtype)) if dtype is not None else None
    torch.cuda.synchronize(); t0 = time.perf_counter()
    model.train()
    train_total, n = 0., 0
    for xb, yb in train:
        if channels_last: xb = xb.contiguous(memory_format=torch.channels_last)
        if ac:
            with ac(): loss = loss_func(model(xb), yb)
        else: loss = loss_func(model(xb), yb)
        if scaler: scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
        else: loss.backward(); opt.step()
        opt.zero_grad()
        train_total += loss.detach() * len(yb); n += len(yb)
    model.eval()
    total, correct, nv = 0., 0., 0
    with torch.no_grad():
        for xb, yb in valid:
            if channels_last: xb = xb.contiguous(memory_format=torch.channels_last)
            if ac:
                with ac(): pred = model(xb); l = loss_func(pred, yb)
            else: pred = model(xb); l = loss_func(pred, yb)
            total += l * len(yb); correct += (pred.argmax(-1) == yb).float().sum(); nv += len(yb)
    res = [(train_total / n).item(), (total / nv).item(), (correct / nv).item()]
    torch.cuda.synchronize()
    return time.perf_counter() - t0, res[1]

def fastcb_default(model, train, valid, dtype=None, channels_last=False):
    "fastcb's Learner with its default callbacks and the accuracy metric (+ MixedPrecision / ChannelsLast)."
    cbs = ([MixedPrecision(dtype)] if dtype is not None else []) + ([ChannelsLast()] if channels_last else [])
    learn = Learner(DataLoaders(train, valid, device=DEV), model, nn.CrossEntropyLoss(), lr=1e-3,
                    opt_func=opt_for(dtype), metrics=accuracy, cbs=cbs)
    torch.cuda.synchronize(); t0 = time.perf_counter()
    with learn.no_logging(): learn.fit(1)
    torch.cuda.synchronize()
    return time.perf_counter() - t0, learn.recorder.values[-1][1]

SYNC_SITES = {}

def count_syncs(f, *args, label='', **kw):
    "Number of synchronising CUDA calls during f(...); where they came from is kept in SYNC_SITES[label]."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        torch.cuda.set_sync_debug_mode('warn')
        try: f(*args, **kw)
        finally: torch.cuda.set_sync_debug_mode('default')
    syncs = [w for w in caught if 'synchroniz' in str(w.message).lower()]
    sites = {}
    for w in syncs:
        k = f"{'/'.join(w.filename.split('/')[-2:])}:{w.lineno}"
        sites[k] = sites.get(k, 0) + 1
    SYNC_SITES[label] = sites
    return len(syncs)

def bench(name, make_model, train, valid, reps, bs, **kw):
    # Models are built (and copied to the GPU) outside the timed and sync-counted region.
    for f in (hand_written, fastcb_default): f(make_model(), train[:20], valid[:2], **kw)   # warm-up
    times = {'hand-written': [], 'fastcb default': []}
    losses = {}
    order = [('hand-written', hand_written), ('fastcb default', fastcb_default)]
    for rep in range(reps):
        for label, f in (order if rep % 2 == 0 else order[::-1]):   # A B, B A, ...: neither always goes first
            model = make_model()
            gc.collect()   # the previous run's garbage is not collected on the clock
            dt, vl = f(model, train, valid, **kw)
            times[label].append(dt); losses[label] = vl
    syncs = {label: count_syncs(f, make_model(), train, valid, label=f'{name} | {label}', **kw)
             for label, f in (('hand-written', hand_written), ('fastcb default', fastcb_default))}
    steps = len(train)
    base = statistics.median(times['hand-written'])
    rows = []
    for label, ts in times.items():
        med = statistics.median(ts)
        paired = statistics.median(h / t for h, t in zip(times['hand-written'], ts))
        rows.append({'config': name, 'loop': label, 'us_per_step': med / steps * 1e6, 'paired_throughput_vs_hand': paired,
                     'min_us_per_step': min(ts) / steps * 1e6, 'max_us_per_step': max(ts) / steps * 1e6,
                     'items_per_s': steps * bs / med, 'throughput_vs_hand': base / med,
                     'syncs_per_fit': syncs[label], 'syncs_per_step': syncs[label] / steps, 'valid_loss': losses[label]})
    return rows

def main(reps=5, quick=False):
    s = 10 if quick else 1
    rows = []
    rows += bench('MLP, batch 256, data on GPU', mlp, mlp_data(2000 // s), mlp_data(200 // s, seed=1), reps, 256)
    rows += bench('ResNet-18 3x32x32, batch 512, bf16, channels-last', resnet, image_data(200 // s),
                  image_data(20 // s, seed=1), reps, 512, dtype=torch.bfloat16, channels_last=True)
    rows += bench('ResNet-18 3x32x32, batch 512, fp16 + GradScaler (fused Adam), channels-last', resnet,
                  image_data(200 // s), image_data(20 // s, seed=1), reps, 512, dtype=torch.float16, channels_last=True)
    return rows

def print_table(rows):
    print(f"\n{torch.cuda.get_device_name()} · torch {torch.__version__}\n")
    print("| config | loop | µs/step (median) | min–max | items/s | throughput vs hand-written (ratio of medians; median of paired ratios) | host syncs per fit (per step) | valid loss |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['loop']} | {r['us_per_step']:.0f} | {r['min_us_per_step']:.0f}–{r['max_us_per_step']:.0f} "
              f"| {r['items_per_s']:,.0f} | {r['throughput_vs_hand']:.3f}; {r['paired_throughput_vs_hand']:.3f} | {r['syncs_per_fit']} ({r['syncs_per_step']:.3f}) | {r['valid_loss']:.4f} |")

if __name__ == '__main__':
    p = argparse.ArgumentParser(); p.add_argument('--reps', type=int, default=5); p.add_argument('--json'); p.add_argument('--quick', action='store_true')
    a = p.parse_args()
    if not torch.cuda.is_available(): sys.exit("bench/gpu.py needs a CUDA GPU")
    rows = main(a.reps, a.quick)
    print_table(rows)
    print("\nWhere the synchronisations come from (file:line -> count):")
    for label, sites in SYNC_SITES.items(): print(f"  {label}: {sites}")
    if a.json:
        json.dump({'device': torch.cuda.get_device_name(), 'torch': torch.__version__, 'rows': rows, 'sync_sites': SYNC_SITES},
                  open(a.json, 'w'), indent=1)
