"""fastai's callback-facing surface on fastcb (issue 29), checked without fastai.

`bench/fastai_surface.py` (run with bench/.venv, which has fastai 2.8.12) made the committed table `nbs/fastai_surface.csv`
and recorded in `tests/fastai_surface_probe.json` what its probe callback saw on fastai, at every event, for every name the
table calls *same*. These tests run the same probe (imported from that script: it needs no fastai) on fastcb and compare,
so a change that makes a *same* name differ from fastai fails here.
"""
import copy, csv, importlib, importlib.util, json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location('fastai_surface', ROOT / 'bench' / 'fastai_surface.py')
fs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fs)

PROBE = json.loads((ROOT / 'tests' / 'fastai_surface_probe.json').read_text())
ROWS = list(csv.DictReader((ROOT / 'nbs' / 'fastai_surface.csv').open()))
PROBED_KINDS = ('Callback', 'Learner', 'model (via Learner)', 'Recorder')

torch.set_num_threads(1)


def test_the_table_is_whole():
    "Three statuses; every name not the same says how or why; the probe file holds exactly the table's probed *same* names."
    assert {r['status'] for r in ROWS} == {'same', 'different', 'absent'}
    assert all(r['how'] for r in ROWS if r['status'] != 'same')
    assert len({r['name'] for r in ROWS}) == len(ROWS)
    same_probed = {r['name'] for r in ROWS if r['status'] == 'same' and r['kind'] in PROBED_KINDS}
    assert same_probed == set(PROBE['same'])
    assert {r['name'].split('.')[-1] for r in ROWS if r['status'] == 'same'} >= set(PROBE['helpers'])


@pytest.fixture(scope='module')
def fastcb_run():
    names = [n for n in PROBE['same'] if not n.startswith('Recorder.')]
    rec_names = [n.removeprefix('Recorder.') for n in PROBE['same'] if n.startswith('Recorder.')]
    return fs.probe_fit('fastcb', names, rec_names)


@pytest.mark.parametrize('order', fs.PROBE_ORDERS)
def test_same_names_see_what_fastai_shows(fastcb_run, order):
    "Each *same* name: the type, shape and value fastai showed, at every event, before and after the Recorder."
    timeline, log = fastcb_run[order]
    expected_timeline = PROBE['timelines'][str(order)]
    assert timeline == expected_timeline                      # the same events, in the same order, as many times
    problems = []
    for name, runs in PROBE['same'].items():
        diff = fs.compare(fs.unrle(runs[str(order)]), log[name], timeline, values=name not in PROBE['volatile'])
        if diff: problems.append(f"{name}: {diff}")
    assert not problems, f"{len(problems)} names no longer as in fastai 2.8.12:\n" + '\n'.join(problems)


def test_helpers_return_what_fastai_returns():
    "fastai's helpers (`to_detach`, `flatten_check`, `find_bs`, ...), on the same inputs, give what fastai's gave."
    problems = []
    for name, d in PROBE['helpers'].items():
        got = fs.helper_results(getattr(importlib.import_module(d['module']), name), name)
        if not fs._close(d['results'], got): problems.append(f"{name}: fastai {d['results']}, fastcb {got}")
    assert not problems, '\n'.join(problems)


def test_module_names_are_where_the_table_says():
    "A name the table finds in fastcb is importable from that module, and from `fastcb.all`."
    import fastcb.all
    for r in ROWS:
        if r['kind'] in PROBED_KINDS or r['status'] == 'absent': continue
        module, name = r['how'].split(';')[0].removeprefix('in '), r['name'].split('.')[-1]
        assert hasattr(importlib.import_module(module), name), r
        assert hasattr(fastcb.all, name), r


def test_the_comparison_can_fail():
    "The comparison notices a changed value, a value filled at another moment, and a changed type."
    order = str(fs.PROBE_ORDERS[0])
    runs, events = fs.unrle(PROBE['same']['Recorder.lrs'][order]), PROBE['timelines'][order]
    assert fs.compare(runs, copy.deepcopy(runs), events) is None
    i = next(k for k, s in enumerate(runs) if s[0] == 'list' and s[1] >= 1)   # the first event that sees a learning rate
    value = copy.deepcopy(runs); value[i][2][0][1] *= 1.01
    assert fs.compare(runs, value, events).startswith(f'at {events[i]}:')
    late = copy.deepcopy(runs); late[i] = ['list', 0, []]                    # filled at a later moment
    assert fs.compare(runs, late, events) is not None
    kind = copy.deepcopy(runs); kind[i][2][0] = ['Tensor', 'torch.float32', [], False, [kind[i][2][0][1]]]
    assert fs.compare(runs, kind, events, values=False) is not None
