"""The compiled training step (`learn.compile(step=True)`) against a hand-written eager loop and fastcb's eager loop.

Training steps only (no validation), the data already in memory as a list of batches (on the GPU for the GPU section),
Adam, each contender's model and optimizer built once and trained for one epoch per repetition, so that compilation
(done in a warm-up epoch) is not on the clock. Repetitions are interleaved, the order alternating, and medians reported.

CPU (one thread):
  mlp   MLP 64->64->10, batch 64, 300 steps (the tiny configuration of bench/cpu.py)
  cnn1d a small 1-D CNN on MNIST-1D-sized signals (1x40, 10 classes), batch 128, 100 steps
GPU (when CUDA is present; writes bench/results/compile_gpu.json):
  MLP 64->64->10, batch 256, 500 steps, data on the GPU
  ResNet-18 (torchvision) 3x32x32, batch 512, bf16 autocast, channels-last, 50 steps
  contenders: hand-written eager, fastcb eager, fastcb compiled step (inductor, mode=None),
              fastcb compiled step with CUDA graphs (mode='reduce-overhead')
Times are the process's CPU time on the CPU (one thread: other processes on the machine do not inflate it) and wall time
on the GPU. Deterministic counts, each in a separate epoch: Python and C function calls per step (sys.setprofile), and on
the GPU host-device synchronisations per fit (torch.cuda.set_sync_debug_mode('warn')).

    python bench/compile.py [--reps 5] [--cpu-only | --gpu-only] [--gpu-configs mlp resnet] [--backend inductor]
                            [--json-cpu bench/results/compile_cpu.json] [--json-gpu bench/results/compile_gpu.json]
"""
import argparse, gc, json, os, platform, statistics, sys, time, warnings
import torch
from torch import nn

from fastcb.learner import Learner
from fastcb.data import DataLoaders
from fastcb.callback.training import MixedPrecision, ChannelsLast

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results')

def batches(n_steps, bs, shape, n_out=10, device='cpu', seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(n_steps * bs, *shape, device=device, generator=g)
    y = torch.randint(0, n_out, (n_steps * bs,), device=device, generator=g)
    return [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)]

def mlp(device='cpu'):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)).to(device)

def cnn1d(device='cpu'):
    "A small CNN for MNIST-1D-sized inputs: 1 channel of 40 samples, 10 classes."
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(1, 32, 5, stride=2, padding=2), nn.ReLU(),
                         nn.Conv1d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv1d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(64 * 5, 10)).to(device)

def resnet18(device='cuda'):
    import torchvision
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).to(device)

def _sync(device):
    if device == 'cuda': torch.cuda.synchronize()

def _clock(device):
    "On the CPU (one thread) the process's CPU time, which other processes on the machine do not inflate; wall time on a GPU."
    return time.process_time() if device == 'cpu' else time.perf_counter()

class HandWritten:
    "The eager loop a careful PyTorch user writes: forward, loss, backward, step, zero_grad; the loss kept on the device."
    def __init__(self, model, train, dtype=None, channels_last=False, device='cpu'):
        self.model, self.train, self.device, self.channels_last = model, train, device, channels_last
        if channels_last: self.model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        self.loss_func, self.dtype = nn.CrossEntropyLoss(), dtype
    def epoch(self):
        model, opt, loss_func, dev, dtype = self.model, self.opt, self.loss_func, self.device, self.dtype
        model.train()
        losses = []
        for xb, yb in self.train:
            if self.channels_last: xb = xb.contiguous(memory_format=torch.channels_last)
            if dtype is not None:
                with torch.autocast(dev, dtype=dtype): loss = loss_func(model(xb), yb)
            else: loss = loss_func(model(xb), yb)
            loss.backward(); opt.step(); opt.zero_grad()
            losses.append(loss.detach())
        return torch.stack(losses).mean().item()

class Fastcb:
    "fastcb's Learner with its default callbacks (the progress bar removed), eager or with the compiled step."
    def __init__(self, model, train, dtype=None, channels_last=False, device='cpu', compile_kw=None):
        cbs = ([MixedPrecision(dtype)] if dtype is not None else []) + ([ChannelsLast()] if channels_last else [])
        self.learn = Learner(DataLoaders(train, None, device=device), model, nn.CrossEntropyLoss(), lr=1e-3, cbs=cbs)
        self.learn.remove_cb(self.learn.cb('ProgressCallback'))
        self.learn.logger = lambda *a, **k: None
        if compile_kw is not None: self.learn.compile(step=True, **compile_kw)
    def epoch(self):
        self.learn.fit(1)
        return self.learn.recorder.values[-1][0]

def count_calls(f):
    "Python and C function calls during f() (sys.setprofile): a deterministic measure of the work done on the host."
    n = [0]
    def prof(frame, event, arg):
        if event in ('call', 'c_call'): n[0] += 1
    sys.setprofile(prof)
    try: f()
    finally: sys.setprofile(None)
    return n[0]

def count_syncs(f):
    "Synchronising CUDA calls during f()."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        torch.cuda.set_sync_debug_mode('warn')
        try: f()
        finally: torch.cuda.set_sync_debug_mode('default')
    return sum('synchroniz' in str(w.message).lower() for w in caught)

def bench(name, contenders, n_steps, bs, reps, device):
    "Interleaved repetitions of one epoch per contender; rows of medians (µs per step) and ratios to the hand-written loop."
    t_compile = {}
    for label, c in contenders.items():   # warm-up: compiles the compiled ones
        _sync(device); t0 = time.perf_counter(); c.epoch(); _sync(device)
        t_compile[label] = time.perf_counter() - t0
        c.epoch()   # a second epoch: optimizers that create their state at the first step are compiled for it too
    times = {k: [] for k in contenders}
    losses = {}
    order = list(contenders.items())
    for rep in range(reps):
        for label, c in (order if rep % 2 == 0 else order[::-1]):
            gc.collect()
            _sync(device); t0 = _clock(device)
            losses[label] = c.epoch()
            _sync(device)
            times[label].append(_clock(device) - t0)
    syncs = {k: count_syncs(c.epoch) for k, c in contenders.items()} if device == 'cuda' else {}
    calls = {k: count_calls(c.epoch) for k, c in contenders.items()}
    base = statistics.median(times['hand-written eager'])
    rows = []
    for label, ts in times.items():
        med = statistics.median(ts)
        rows.append({'config': name, 'loop': label, 'us_per_step': med / n_steps * 1e6,
                     'min_us_per_step': min(ts) / n_steps * 1e6, 'max_us_per_step': max(ts) / n_steps * 1e6,
                     'items_per_s': n_steps * bs / med, 'throughput_vs_hand': base / med,
                     'paired_throughput_vs_hand': statistics.median(h / t for h, t in zip(times['hand-written eager'], ts)),
                     'first_epoch_s': t_compile[label], 'syncs_per_fit': syncs.get(label),
                     'python_calls_per_step': calls[label] / n_steps, 'train_loss': losses[label]})
    return rows

def cpu_section(reps, backend):
    torch.set_num_threads(1)
    rows = []
    for name, make, shape, bs, steps in (('MLP 64-64-10, batch 64 (CPU, 1 thread)', mlp, (64,), 64, 300),
                                         ('1-D CNN on 1x40 signals, batch 128 (CPU, 1 thread)', cnn1d, (1, 40), 128, 100)):
        train = batches(steps, bs, shape)
        contenders = {'hand-written eager': HandWritten(make(), train),
                      'fastcb eager': Fastcb(make(), train),
                      f'fastcb compiled step ({backend})': Fastcb(make(), train, compile_kw={'backend': backend})}
        rows += bench(name, contenders, steps, bs, reps, 'cpu')
    return rows

GPU_CONFIGS = {'mlp': ('MLP 64-64-10, batch 256, data on GPU', mlp, (64,), 256, 500, {}),
               'resnet': ('ResNet-18 3x32x32, batch 512, bf16, channels-last', resnet18, (3, 32, 32), 512, 50,
                          {'dtype': torch.bfloat16, 'channels_last': True})}

def conv_grad_strides_mispredicted() -> bool:
    "Does this torch's meta kernel say a channels-last convolution's gradients are contiguous (pytorch/pytorch#171622)?"
    x = torch.empty(2, 8, 6, 6, device='meta').to(memory_format=torch.channels_last)
    w = torch.empty(8, 8, 3, 3, device='meta').to(memory_format=torch.channels_last)
    gi, gw, _ = torch.ops.aten.convolution_backward(torch.empty_like(x), x, w, [8], [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                                                    [True, True, True])
    return not gi.is_contiguous(memory_format=torch.channels_last)

def gpu_section(reps, backend, which=('mlp', 'resnet'), dump=None):
    "The GPU configurations in `which`; `dump(rows)` after each one (what ran is kept if a later one fails or is stopped)."
    dev, rows = 'cuda', []
    for name, make, shape, bs, steps, kw in (GPU_CONFIGS[k] for k in which):
        train = batches(steps, bs, shape, device=dev)
        contenders = {'hand-written eager': HandWritten(make(dev), train, device=dev, **kw),
                      'fastcb eager': Fastcb(make(dev), train, device=dev, **kw)}
        skip_cl = False
        for label, ckw in ((f'fastcb compiled step ({backend})', {'backend': backend}),
                           (f'fastcb compiled step ({backend}, CUDA graphs)', {'backend': backend, 'mode': 'reduce-overhead'})):
            tries = [('', kw)] if not skip_cl else []
            if kw.get('channels_last'):   # torch versions with pytorch/pytorch#171622 fail inductor's stride check there
                print(f"torch {torch.__version__}: channels-last conv gradients mispredicted by the meta kernel: "
                      f"{conv_grad_strides_mispredicted()}", flush=True)
                tries.append((' (contiguous model; inductor picks the convolutions\' layouts)', {**kw, 'channels_last': False}))
            for note, kw_try in tries:
                c = Fastcb(make(dev), train, device=dev, compile_kw=ckw, **kw_try)
                try:
                    with warnings.catch_warnings():
                        warnings.filterwarnings('error', 'learn.compile', UserWarning)   # a fallback to eager or to no graph fails
                        c.epoch()
                except Exception as e:
                    print(f"{name}: {label}{note} failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}", flush=True)
                    del c; gc.collect(); torch.cuda.empty_cache()
                    continue
                contenders[label + note] = c
                skip_cl = bool(note)   # the next compiled contender goes straight to what worked
                break
        rows += bench(name, contenders, steps, bs, reps, dev)
        print_table(rows[-len(contenders):], f"{torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
        if dump is not None: dump(rows)
        del contenders, train
        gc.collect(); torch.cuda.empty_cache()
    return rows

def print_table(rows, title, flush=False):
    print(f"\n{title}\n", flush=flush)
    print("| config | loop | µs/step (median) | min–max | items/s | throughput vs hand-written (ratio of medians; paired) | first epoch (s, incl. compile) | Python calls per step | syncs per fit | train loss |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['loop']} | {r['us_per_step']:.0f} | {r['min_us_per_step']:.0f}–{r['max_us_per_step']:.0f} "
              f"| {r['items_per_s']:,.0f} | {r['throughput_vs_hand']:.2f}; {r['paired_throughput_vs_hand']:.2f} "
              f"| {r['first_epoch_s']:.1f} | {r['python_calls_per_step']:.0f} | {r['syncs_per_fit'] if r['syncs_per_fit'] is not None else '-'} | {r['train_loss']:.4f} |")

if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--reps', type=int, default=5)
    p.add_argument('--backend', default='inductor')
    p.add_argument('--cpu-only', action='store_true'); p.add_argument('--gpu-only', action='store_true')
    p.add_argument('--json-cpu', default=None, help='write the CPU rows here (e.g. bench/results/compile_cpu.json)')
    p.add_argument('--json-gpu', default=os.path.join(RESULTS, 'compile_gpu.json'))
    p.add_argument('--gpu-configs', nargs='+', default=['mlp', 'resnet'], choices=list(GPU_CONFIGS))
    a = p.parse_args()
    meta = {'date': time.strftime('%Y-%m-%d'), 'torch': torch.__version__, 'python': platform.python_version(), 'backend': a.backend, 'reps': a.reps}
    if not a.gpu_only:
        rows = cpu_section(a.reps, a.backend)
        print_table(rows, f"CPU ({platform.processor() or platform.machine()}), torch {torch.__version__}")
        if a.json_cpu: json.dump({**meta, 'device': 'cpu, 1 thread', 'rows': rows}, open(a.json_cpu, 'w'), indent=1)
    if not a.cpu_only:
        if not torch.cuda.is_available():
            print("\nNo CUDA GPU: the GPU section was skipped.")
        else:
            os.makedirs(os.path.dirname(os.path.abspath(a.json_gpu)), exist_ok=True)
            def dump(rows):
                json.dump({**meta, 'device': torch.cuda.get_device_name(), 'rows': rows}, open(a.json_gpu, 'w'), indent=1)
                print(f"\nwrote {a.json_gpu}", flush=True)
            gpu_section(a.reps, a.backend, a.gpu_configs, dump)
