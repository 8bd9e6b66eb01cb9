"""A real Ctrl-C (SIGINT) during a fresh process's *first* fit, at moments spread over it: the fit stops with
`KeyboardInterrupt`, and the next fits in the same process work.

The first fit is special: building the first optimizer makes torch import `torch._dynamo` and sympy (about 900 modules)
lazily, and an import cut short by a Ctrl-C used to leave modules half-made, so that every later fit failed with
`AttributeError: module 'sympy' has no attribute 'logic'`. Each trial is a fresh interpreter (`subprocess`, not fork).
The moments come from the children themselves: each reports, on the monotonic clock that processes share, when its fit
started, when its lazy imports ran (an audit hook sees every import) and how long an epoch takes; the next signals are
aimed at those windows until enough have landed inside the imports and inside the training after them. The verdict does
not depend on the machine's speed; the time limit only guards against a hang."""
import json, math, os, select, signal, statistics, subprocess, sys, textwrap, time


CHILD = textwrap.dedent('''
    import json, signal, sys, time, traceback
    import torch
    dynamo_with_torch = 'torch._dynamo' in sys.modules
    from torch import nn
    from fastcb.all import *
    light = dynamo_with_torch or 'torch._dynamo' not in sys.modules   # importing fastcb imports no torch._dynamo
    torch.set_num_threads(1)

    imports, fit_no, starts = [], 0, {}   # (time, fit number) of each module imported during a fit; when fits start
    def audit(event, args):
        if event == 'import' and fit_no: imports.append((time.monotonic(), fit_no))
    sys.addaudithook(audit)

    def learner():
        learn = Learner(digits_dls(bs=64, flat=True), nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)))
        learn.remove_cb(learn.progress)
        return learn

    def fit(learn, n, n_epoch):
        global fit_no
        fit_no, starts[n] = n, time.monotonic()
        with learn.no_logging(): learn.fit(n_epoch)
        fit_no = 0
        return time.monotonic() - starts[n]

    learn = learner()
    print('FIT', flush=True)
    try:
        fit(learn, 1, int(sys.argv[1]))
        while True: time.sleep(0.01)   # the fit ended first: the Ctrl-C lands here
    except KeyboardInterrupt as e:
        inside = any(f.f_code.co_name == 'fit' and 'fastcb' in f.f_code.co_filename
                     for f, _ in traceback.walk_tb(e.__traceback__))
    fit_no = 0
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # only one Ctrl-C is sent; none may disturb what follows
    usable = not learn.training and all(p.grad is None for p in learn.model.parameters())
    epoch = min(fit(learn, 2, 1), fit(learner(), 3, 1))   # the same learner trains again, and so does a new one
    first = [t for t, n in imports if n == 1]
    # From the start of a fit to the end of its lazy imports: those of the first fit, and those of the second if the
    # Ctrl-C came before the first got to them.
    lazy_time = max(max((t for t, m in imports if m == n), default=starts[n]) - starts[n] for n in (1, 2))
    print('RESULT', json.dumps({'inside': inside, 'usable': usable, 'light': light, 'loss': learn.recorder.values[-1][0],
                                't_fit': starts[1], 'imports_end': first[-1] if first else None, 'lazy_time': lazy_time,
                                'n_lazy': sum(n in (1, 2) for _, n in imports), 'epoch_time': epoch}), flush=True)
''')

def _run_trial(delay:float, n_epoch:int, deadline:float) -> dict:
    "Start a fresh child whose first fit is `n_epoch` epochs, send it SIGINT `delay` seconds into that fit; return its report."
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    proc = subprocess.Popen([sys.executable, '-c', CHILD, str(n_epoch)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], max(deadline - time.monotonic(), 1))
        line = proc.stdout.readline() if ready else ''
        assert line.strip() == 'FIT', 'the child did not start its fit: ' + line + (proc.stderr.read() if ready else '')
        time.sleep(delay)
        t_send = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if proc.poll() is None: proc.kill(); proc.communicate()
    assert proc.returncode == 0, f'a Ctrl-C {delay:.3f}s into the first fit broke the process:\n{err[-3000:]}'
    res = json.loads(out.strip().splitlines()[-1].removeprefix('RESULT '))
    assert res['light'], 'importing fastcb imported torch._dynamo'
    assert res['n_lazy'] > 100, res   # the first fit really did the lazy imports this test is about
    assert res['usable'] and res['loss'] == res['loss'], res
    end = res['imports_end']
    res['delay'] = delay
    res['in_imports'] = end is not None and res['t_fit'] <= t_send <= end
    res['after_imports'] = res['inside'] and end is not None and t_send > end
    # A Ctrl-C held back while the imports finish must still stop the fit right after them.
    if res['in_imports']: assert res['inside'], res
    return res

def test_ctrl_c_in_the_first_fit_leaves_the_process_usable():
    deadline = time.monotonic() + 300            # only against a hang
    want_in, want_after = 5, 2                   # signals landing in the lazy imports, and in the training after them
    trials, pending = [], [0.]                   # the first signal as the fit starts; the next aimed from what came back
    n_epoch = 20
    while time.monotonic() < deadline and len(trials) < 14:
        if not pending:
            n_in, n_after = sum(t['in_imports'] for t in trials), sum(t['after_imports'] for t in trials)
            if n_in >= want_in and n_after >= want_after: break
            imports, epoch = (statistics.median(t[k] for t in trials) for k in ('lazy_time', 'epoch_time'))
            # Train after the imports about as long as they take, so that signals aimed there land there even if
            # the next child runs at another speed.
            n_epoch = max(20, math.ceil(imports / epoch))
            training = epoch * n_epoch
            pending = [imports * (i + 0.5) / want_in for i in range(max(want_in - n_in, 0))]
            pending += [imports + training * (i + 1) / (want_after + 1) for i in range(max(want_after - n_after, 0))]
        trials.append(_run_trial(pending.pop(0), n_epoch, deadline))
    n_in, n_after = sum(t['in_imports'] for t in trials), sum(t['after_imports'] for t in trials)
    summary = [(round(t['delay'], 3), t['inside'], t['in_imports'], t['after_imports']) for t in trials]
    assert n_in >= want_in and n_after >= want_after, ('too few signals landed in the first fit', summary)
