"""Real Ctrl-C (SIGINT) at random moments, many times, in another process: whatever the signal interrupts (a batch,
validation, a save, SaveModelCallback's reload, lr_find's restore, teardown itself), the learner is left usable and no
process-wide state is changed. Bounded: a fixed number of trials, and a time limit."""
import os, random, signal, subprocess, sys, textwrap, time

SCRIPT = textwrap.dedent('''
    import os, signal, sys, torch
    from torch import nn
    from fastcb.all import *
    torch.set_num_threads(1)

    n_trials, failures = int(sys.argv[1]), []
    dls = digits_dls(bs=32, flat=True)
    fds = lambda: len(os.listdir('/proc/self/fd'))

    def make(i):
        torch.manual_seed(i)
        cbs = [CSVLogger(), SaveModelCallback(), ActivationStats(every=4)]
        if i % 2: cbs.append(MixedPrecision('bf16'))
        learn = Learner(dls, nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), lr=1e-2,
                        path=sys.argv[2], cbs=cbs)
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
        if what == 'lr_find' and not all(torch.equal(a, b) for a, b in zip(learn.model.state_dict().values(), w0)):
            problems.append('lr_find did not restore the weights')
        if problems: failures.append((i, what, problems))

    def block():
        while True:   # a Ctrl-C landing in the handler itself is retried
            try: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}); return
            except KeyboardInterrupt: pass

    block()
    warm = make(0)   # every lazy import done before the first Ctrl-C: an interrupted import leaves modules half-made
    with warm.no_logging():
        warm.fit(1); warm.validate(); warm.lr_find(num_it=12, show_plot=False); warm.save('m'); warm.load('m')
    del warm
    base_fds, i = None, 0
    print('READY', flush=True)
    while i < n_trials:
        learn = make(i)
        what = ('fit', 'validate', 'lr_find', 'save_load')[i % 4]
        w0 = [v.clone() for v in learn.model.state_dict().values()]
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})   # Ctrl-C may land from here ...
            with learn.no_logging():
                if what == 'fit': learn.fit(2)
                elif what == 'validate': learn.validate()
                elif what == 'lr_find': learn.lr_find(num_it=12, show_plot=False)
                else:
                    learn.fit(1); learn.save('m'); learn.load('m')
            block()                                                       # ... to here
        except KeyboardInterrupt: block()
        check(learn, i, what, w0)
        with learn.no_logging(): learn.fit(1)                         # the learner still trains
        del learn
        if base_fds is None: base_fds = fds()
        elif fds() > base_fds + 2: failures.append((i, what, [f'{fds() - base_fds} files left open']))
        i += 1
    print('DONE', i, failures, flush=True)
''')

def test_random_sigints_leave_the_learner_usable(tmp_path):
    path = tmp_path / 'train.py'; path.write_text(SCRIPT)
    n_trials = 24
    proc = subprocess.Popen([sys.executable, str(path), str(n_trials), str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert proc.stdout.readline().strip() == 'READY', proc.stderr.read()
    rng, sent, deadline = random.Random(0), 0, time.monotonic() + 150
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.02, 0.4))
        if proc.poll() is None: proc.send_signal(signal.SIGINT); sent += 1
    if proc.poll() is None: proc.kill()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-3000:]
    last = out.strip().splitlines()[-1]
    assert last == f'DONE {n_trials} []', (last, err[-2000:])
    assert sent >= 10, sent   # the signals really landed during the trials
