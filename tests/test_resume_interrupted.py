"""Real Ctrl-C (SIGINT) at random moments of a fit, in another process, then `resume='interrupted'` in the same process:
however many times a run is interrupted, it ends bit-identical (`torch.equal`) to the same run never interrupted, for
`fit` and the schedule methods (shuffled data, dropout, a metric in the Recorder's history).

The script runs one call at a time, when told to; the test sends one SIGINT per call at a random moment of it, drawn from
how long an uninterrupted run takes here, and goes on until `N_LANDED` interrupts of each method stopped a fit (left
`learn.interrupted`). So the verdict does not depend on the machine's speed; the only time limit guards against a hang."""
import random, textwrap, time
from collections import Counter
from sigint import Script, HANG

SCRIPT = textwrap.dedent('''
    import signal, sys, time, torch
    from torch import nn
    from fastcb.all import *
    torch.set_num_threads(1)

    split = lambda m: [list(m[:2].parameters()), list(m[2:].parameters())]
    def make():
        torch.manual_seed(0)
        learn = Learner(digits_dls(bs=64, flat=True), nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 10)), lr=1e-2,
                        metrics=accuracy, splitter=split)
        learn.remove_cb(learn.progress)
        return learn
    calls = {'fit': lambda l, **kw: l.fit(2, **kw), 'fit_one_cycle': lambda l, **kw: l.fit_one_cycle(2, **kw),
             'fit_flat_cos': lambda l, **kw: l.fit_flat_cos(2, **kw), 'fit_sgdr': lambda l, **kw: l.fit_sgdr(1, 1, **kw),
             'fine_tune': lambda l, **kw: l.fine_tune(1, freeze_epochs=1, **kw)}

    def block():
        while True:   # a Ctrl-C landing in the handler itself is retried
            try: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}); return
            except KeyboardInterrupt: pass
    def drop_pending():   # a Ctrl-C that came after its call ended (blocked since) is not carried into the next one
        while signal.sigtimedwait({signal.SIGINT}, 0) is not None: pass
    def same(a, b):
        return (all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
                and a.recorder.values == b.recorder.values and a.recorder.losses == b.recorder.losses)

    block()
    refs = {}
    for name, call in calls.items():   # the runs never interrupted
        refs[name] = make()
        with refs[name].no_logging(): call(refs[name])
    print('READY', flush=True)
    learn = None
    for command in sys.stdin:   # NEW name: start a run of that method; GO: its next call; STOP
        command = command.split()
        if command[0] == 'STOP': break
        if command[0] == 'NEW': name, learn, resume = command[1], make(), None
        drop_pending()
        print('GO', flush=True)
        how, start = 'finished', time.perf_counter()
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})   # Ctrl-C may land from here ...
            with learn.no_logging(): calls[name](learn, resume=resume)
            block()                                                       # ... to here
        except KeyboardInterrupt:
            block()
            how = 'stopped' if learn.interrupted is not None else 'lost'   # lost: outside the fit's loop (started again)
            if how == 'lost': learn, resume = make(), None
            else: resume = 'interrupted'
        took = time.perf_counter() - start
        drop_pending()
        print('END', how, f'{took:.6f}', same(learn, refs[name]) if how == 'finished' else '-', flush=True)
    print('DONE', flush=True)
''')

METHODS = ('fit', 'fit_one_cycle', 'fit_flat_cos', 'fit_sgdr', 'fine_tune')
N_LANDED = 4   # interrupts of each method that stopped a fit

def test_ctrl_c_then_resume_interrupted_is_bit_identical(tmp_path):
    rng, landed, longest, n_runs = random.Random(0), Counter(), {}, Counter()
    deadline = time.monotonic() + 3 * HANG
    with Script(tmp_path, SCRIPT) as s:
        assert s.readline() == 'READY'
        while min(landed[m] for m in METHODS) < N_LANDED:
            name = min(METHODS, key=lambda m: landed[m])
            command, stops = f'NEW {name}', 0
            while True:   # one run of `name`: interrupted (several times, if it lands so) until it finishes
                assert time.monotonic() < deadline, f"only {dict(landed)} interrupts stopped a fit"
                s.send(command); command = 'GO'
                assert s.readline() == 'GO'
                if name in longest and stops < 3:   # the method's first run is never interrupted: how long it takes here
                    time.sleep(rng.uniform(0, longest[name]))
                    s.interrupt()
                end, how, took, same = s.readline().split()
                assert end == 'END', end
                if how == 'stopped': stops += 1; landed[name] += 1; continue
                if how == 'lost': continue
                assert same == 'True', f"{name} interrupted {stops} times did not end as the run never interrupted"
                longest[name] = max(longest.get(name, 0), float(took))
                n_runs[name] += 1
                break
        s.send("STOP")
        assert s.finish() == ['DONE']
