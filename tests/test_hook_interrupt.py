"A real Ctrl-C (SIGINT) in the middle of an epoch, in another process: the hooks of ActivationStats are removed, the next fit works."
import textwrap
from sigint import run_and_interrupt

SCRIPT = textwrap.dedent('''
    import sys, time, torch
    from torch import nn
    from fastcb.all import *
    from fastcb.callback.hook import ActivationStats

    def no_hooks(model):
        return all(not m._forward_hooks and not m._backward_hooks for m in model.modules())

    class WaitForCtrlC(Callback):
        "At the third training batch, say READY and wait for the signal: it lands mid-epoch, however fast the machine."
        def after_batch(self):
            if self.training and self.iter == 2:
                print('READY', flush=True)
                sys.stdin.readline()   # the test sends SIGINT, then closes stdin: the batch completes, the fit stops after it
                if not self.learn._ctrl_c: sys.exit('no SIGINT came')

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 10))
    learn = Learner(digits_dls(bs=16), model, cbs=ActivationStats(with_hist=True))
    with learn.no_logging():
        try: learn.fit(3, cbs=WaitForCtrlC())
        except KeyboardInterrupt: print('INTERRUPTED', no_hooks(model), len(learn.activation_stats.stats) >= 2, flush=True)
        learn.fit(1)
    print('RESUMED', no_hooks(model), len(learn.activation_stats.stats) == len(learn.dls.train), flush=True)
''')

def test_sigint_removes_activation_stats_hooks(tmp_path):
    lines = run_and_interrupt(tmp_path, SCRIPT)
    assert lines[0] == 'INTERRUPTED True True', lines
    assert lines[-1] == 'RESUMED True True', lines
