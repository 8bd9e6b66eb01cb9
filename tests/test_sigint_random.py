"""Real Ctrl-C (SIGINT) at random moments, many times, in another process: whatever the signal interrupts (a batch,
validation, a save, SaveModelCallback's reload, lr_find's restore, teardown itself), the learner is left usable and no
process-wide state is changed.

The script runs one trial at a time, when told to; the test sends one SIGINT per trial at a random moment of it, drawn
from how long the trials take on this machine, and goes on until every kind of trial was interrupted `N_LANDED` times.
So the verdict does not depend on the machine's speed; the only time limit (`HANG`) guards against a hang."""
import random, textwrap, time
from collections import Counter
from sigint import Script, HANG

SCRIPT = textwrap.dedent('''
    import os, signal, sys, time, torch
    from torch import nn
    from fastcb.all import *
    torch.set_num_threads(1)

    failures = []
    dls = digits_dls(bs=32, flat=True)
    fds = lambda: len(os.listdir('/proc/self/fd'))

    def make(i):
        torch.manual_seed(i)
        cbs = [CSVLogger(), SaveModelCallback(), ActivationStats(every=4)]
        if i % 2: cbs.append(MixedPrecision('bf16'))
        learn = Learner(dls, nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), lr=1e-2,
                        path=sys.argv[1], cbs=cbs)
        learn.remove_cb(learn.progress)
        learn.model.eval()   # as every loop leaves it, so that a Ctrl-C before the loop starts finds it so too
        return learn

    def check(learn, i, what, w0):
        problems = []
        if learn.training or any(m.training for m in learn.model.modules()): problems.append('left training')
        if not torch.is_grad_enabled(): problems.append('grad mode off')
        if torch.is_autocast_enabled('cpu'): problems.append('autocast left on')
        if (torch.randn(2, 2) @ torch.randn(2, 2)).dtype != torch.float32: problems.append('matmul not float32')
        if any(m._forward_hooks for m in learn.model.modules()): problems.append('hooks left')
        if any(p.grad is not None for p in learn.model.parameters()): problems.append('gradients left')
        if what == 'lr_find' and not all(torch.equal(a.cpu(), b.cpu()) for a, b in zip(learn.model.state_dict().values(), w0)):
            problems.append('lr_find did not restore the weights')
        if problems: failures.append((i, what, problems))

    def block():
        while True:   # a Ctrl-C landing in the handler itself is retried
            try: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}); return
            except KeyboardInterrupt: pass

    def drop_pending():   # a Ctrl-C that came after its trial ended (blocked since) is not carried into the next one
        while signal.sigtimedwait({signal.SIGINT}, 0) is not None: pass

    block()
    warm = make(0)   # every lazy import done before the first Ctrl-C: an interrupted import leaves modules half-made
    with warm.no_logging():
        warm.fit(1); warm.validate(); warm.lr_find(num_it=12, show_plot=False); warm.save('m'); warm.load('m')
    del warm
    base_fds, i = None, 0
    print('READY', flush=True)
    for command in sys.stdin:   # RUN: one more trial; STOP
        if command.strip() != 'RUN': break
        drop_pending()
        learn = make(i)
        what = ('fit', 'validate', 'lr_find', 'save_load')[i % 4]
        w0 = [v.clone() for v in learn.model.state_dict().values()]
        print('GO', i, what, flush=True)
        interrupted, start = False, time.perf_counter()
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})   # Ctrl-C may land from here ...
            with learn.no_logging():
                if what == 'fit': learn.fit(2)
                elif what == 'validate': learn.validate()
                elif what == 'lr_find': learn.lr_find(num_it=12, show_plot=False)
                else:
                    learn.fit(1); learn.save('m'); learn.load('m')
            block()                                                       # ... to here
        except KeyboardInterrupt: block(); interrupted = True
        took = time.perf_counter() - start
        drop_pending()
        check(learn, i, what, w0)
        with learn.no_logging(): learn.fit(1)                         # the learner still trains
        del learn
        if base_fds is None: base_fds = fds()
        elif fds() > base_fds + 2: failures.append((i, what, [f'{fds() - base_fds} files left open']))
        print('END', i, what, 'interrupted' if interrupted else 'finished', f'{took:.6f}', flush=True)
        i += 1
    print('DONE', i, failures, flush=True)
''')

KINDS = ('fit', 'validate', 'lr_find', 'save_load')
N_LANDED = 5   # interrupted trials of each kind

def test_random_sigints_leave_the_learner_usable(tmp_path):
    rng, longest, landed, n_trials = random.Random(0), {}, Counter(), 0
    deadline = time.monotonic() + HANG
    with Script(tmp_path, SCRIPT, tmp_path) as s:
        assert s.readline() == 'READY'
        while min(landed[k] for k in KINDS) < N_LANDED:
            assert time.monotonic() < deadline, f"only {dict(landed)} interrupted trials after {HANG} s"
            s.send('RUN')
            go, i, what = s.readline().split()
            assert go == 'GO' and int(i) == n_trials, (go, i)
            if what in longest:   # each kind's first trial runs to its end: how long such a trial takes here
                time.sleep(rng.uniform(0, longest[what]))   # a random moment of the trial, teardown included
                s.interrupt()
            end, i, what, how, took = s.readline().split()
            assert end == 'END' and how in ('interrupted', 'finished'), (end, how)
            if how == 'interrupted': landed[what] += 1
            else: longest[what] = max(longest.get(what, 0), float(took))
            n_trials += 1
        s.send('STOP')
        lines = s.finish()
    assert lines == [f'DONE {n_trials} []'], lines
