"""The loggers across a real SIGKILL and `fit(resume='auto')`, each run a fresh interpreter (no fork): the CSV keeps the
rows written before the kill and holds every epoch once; TensorBoard writes into the same run folder (the default one,
`runs/<date>_<host>`) with no step logged twice; and the next plain fit starts afresh (a new CSV, a new run folder, the
old run's events left alone)."""
import csv, os, signal, subprocess, sys
from pathlib import Path
import pytest

pytest.importorskip('tensorboard')
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

HERE = Path(__file__).parent
HANG = 300   # seconds: only a hung run takes this long

def run(path, mode) -> int:
    "Run tests/resume_loggers_run.py in a fresh interpreter; its exit status (-9: it killed itself)."
    p = subprocess.run([sys.executable, str(HERE / 'resume_loggers_run.py'), str(path), mode], capture_output=True,
                       text=True, timeout=HANG, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert p.returncode in (0, -signal.SIGKILL), f"{mode} run failed ({p.returncode}):\n{p.stderr[-3000:]}"
    return p.returncode

def rows(path):
    with (path / 'history.csv').open() as f: return list(csv.reader(f))

def steps(run_dir, tag) -> list[int]:
    acc = EventAccumulator(str(run_dir), size_guidance={'scalars': 0}); acc.Reload()
    return [e.step for e in acc.Scalars(tag)]

def test_loggers_resume_after_sigkill(tmp_path):
    assert run(tmp_path, 'kill') == -signal.SIGKILL
    killed = rows(tmp_path)
    assert [r[0] for r in killed[1:]] == ['0']   # epoch 0's row, written before the kill
    (run_dir,) = (tmp_path / 'runs').iterdir()
    assert 14 in steps(run_dir, 'train_loss')   # steps after the last checkpoint (12) were on disk when it died

    assert run(tmp_path, 'resume') == 0
    resumed = rows(tmp_path)
    assert resumed[0] == killed[0] and resumed[1] == killed[1]   # the header and the row from before the kill, kept
    assert [r[0] for r in resumed[1:]] == ['0', '1', '2', '3']   # every epoch once
    assert list((tmp_path / 'runs').iterdir()) == [run_dir]   # the same run folder, no second one
    loss_steps = steps(run_dir, 'train_loss')
    assert loss_steps == list(range(2, 33, 2))   # each step once: the stretch after the checkpoint was purged
    assert steps(run_dir, 'valid_loss') == [8, 16, 24, 32]

    assert run(tmp_path, 'plain') == 0
    fresh = rows(tmp_path)
    assert fresh[0] == killed[0] and [r[0] for r in fresh[1:]] == ['0']   # a new log, not appended to the old one
    runs = sorted((tmp_path / 'runs').iterdir())
    assert len(runs) == 2 and run_dir in runs   # a new run folder
    assert steps(run_dir, 'train_loss') == loss_steps   # the old run's events are not purged
    (new,) = [d for d in runs if d != run_dir]
    assert steps(new, 'valid_loss') == [8]
