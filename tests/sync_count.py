"Counting host-device synchronisations with torch.cuda.set_sync_debug_mode, for the GPU tests."
import warnings
import torch

def syncs_during(f):
    "Run `f()` with CUDA's sync debug mode on; return (number of synchronising calls, their sites 'file:line', f's result)."
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        torch.cuda.set_sync_debug_mode('warn')
        try: res = f()
        finally: torch.cuda.set_sync_debug_mode('default')
    # the sync warnings say "called a synchronizing CUDA operation"; the mode itself also warns that it is a prototype
    syncs = [w for w in caught if 'synchronizing cuda operation' in str(w.message).lower()]
    return len(syncs), sorted(f"{w.filename.split('/')[-1]}:{w.lineno}" for w in syncs), res

def fit_syncs(learn, fit=lambda learn: learn.fit(1)):
    "Synchronisations during `fit(learn)`, after one warm-up run of it (allocator, cuBLAS handles, optimizer state)."
    with learn.no_logging(): fit(learn)
    def run():
        with learn.no_logging(): fit(learn)
    n, sites, _ = syncs_during(run)
    print('sync sites:', sites)
    return n
