"A real Ctrl-C (SIGINT) in the middle of an epoch, in another process: the batch in flight completes, the fit stops there, teardown runs, the next fit works."
import re, textwrap
from sigint import run_and_interrupt

SCRIPT = textwrap.dedent('''
    import sys, time, torch
    from torch import nn
    from fastcb.all import *

    class WaitForCtrlC(Callback):
        "At the second training batch, say READY and wait for the signal (then stdin closes): it lands mid-epoch, however fast the machine."
        def after_batch(self):
            if self.training and self.iter == 1:
                print('READY', flush=True)
                sys.stdin.readline()   # the test sends SIGINT, then closes stdin: the batch completes after the signal
                if self.learn.interrupted is None and not self.learn._ctrl_c: sys.exit('no SIGINT came')
    class Cleanup(Callback):
        def cleanup_fit(self): print('CLEANUP', flush=True)

    learn = Learner(digits_dls(bs=16, flat=True), nn.Linear(64, 10), cbs=Cleanup())
    with learn.no_logging():
        try: learn.fit(3, cbs=WaitForCtrlC())
        except KeyboardInterrupt as e:
            print('INTERRUPTED', e.__notes__[-1], flush=True)
        assert not learn.training and all(type(c).__name__ != 'WaitForCtrlC' for c in learn.cbs)
        assert all(p.grad is None for p in learn.model.parameters())
        learn.fit(1)
    print('RESUMED', len(learn.recorder.values), flush=True)
''')

def test_sigint_mid_epoch_leaves_learner_usable(tmp_path):
    lines = run_and_interrupt(tmp_path, SCRIPT)
    assert lines[0] == 'CLEANUP'
    assert re.match(r"INTERRUPTED fastcb: stopped by Ctrl-C after training batch 1 of epoch 0 \(it completed\); continue "
                    r".*resume='interrupted'", lines[1]), lines   # the batch it waited in completed
    assert lines[-1] == 'RESUMED 1'
