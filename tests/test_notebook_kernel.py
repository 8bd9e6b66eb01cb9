"""The notebook experience in a real Jupyter kernel (nbclient driving ipykernel on this Python, offline).

nbdev_test runs notebooks in an IPython shell that is not a Jupyter kernel, so the HTML progress bar, the live loss
graph and the plots are only exercised here: the test runs small fits in a kernel and inspects the messages the kernel
sends (display_data, update_display_data, execute_result), then runs the quick-start tutorial and checks its outputs.
"""
import json, os, re, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
REASON = "needs ipykernel and nbclient (in the dev requirements: pip install -e '.[dev]')"
pytest.importorskip('ipykernel', reason=REASON)
pytest.importorskip('nbclient', reason=REASON)
import nbformat
from nbclient import NotebookClient
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

KERNEL = 'fastcb-test'


class RecordingClient(NotebookClient):
    "A NotebookClient that keeps every kernel message of each cell: {cell index: [(msg_type, content), ...]}."
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.msgs = {}

    def process_message(self, msg, cell, cell_index):
        self.msgs.setdefault(cell_index, []).append((msg['msg_type'], msg['content']))
        return super().process_message(msg, cell, cell_index)


@pytest.fixture(scope='module')
def kernel_dir(tmp_path_factory):
    "A kernel spec that runs ipykernel on this very Python, whatever kernels the machine has."
    d = tmp_path_factory.mktemp('kernels') / KERNEL
    d.mkdir()
    (d / 'kernel.json').write_text(json.dumps({
        'argv': [sys.executable, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
        'display_name': 'fastcb test', 'language': 'python'}))
    return d.parent


def run_nb(nb, kernel_dir, cwd, timeout=300) -> RecordingClient:
    "Execute `nb` in a fresh kernel started in `cwd`, with this checkout's fastcb first on the path; return the client."
    log = Path(kernel_dir) / 'kernel.log'   # the kernel process's own messages, not cell output
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]).rstrip(os.pathsep),
               OMP_NUM_THREADS='1', PYDEVD_DISABLE_FILE_VALIDATION='1')
    env.pop('FASTCB_PROGRESS', None)   # the kernel must detect the notebook itself
    env.pop('MPLBACKEND', None)        # the kernel's inline backend, as in Jupyter
    km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]))
    client = RecordingClient(nb, km=km, timeout=timeout, resources={'metadata': {'path': str(cwd)}})
    try:
        with open(log, 'a') as kerr: client.execute(env=env, stderr=kerr)
    finally:
        if km.has_kernel: km.shutdown_kernel(now=True)
    return client


def of_type(msgs, *types): return [c for t, c in msgs if t in types]
def display_id(content): return content.get('transient', {}).get('display_id')
def html(content): return content['data'].get('text/html', '')


SETUP = '''
import torch
from torch import nn
from fastcb.all import *
torch.set_num_threads(1)
def mk_learner(**kw):
    torch.manual_seed(0)
    dls = digits_dls(bs=128)   # 12 training and 3 validation batches
    return Learner(dls, nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), lr=1e-2,
                   metrics=accuracy, **kw)
'''

FIT = '''
learn = mk_learner()
learn.progress.refresh_every = 0.   # the running loss at every batch
learn.fit(2)
print(learn.progress.active_mode, len(learn.dls.train), len(learn.dls.valid))
'''

GRAPH = '''
learn = mk_learner(cbs=ShowGraphCallback())
learn.fit(3)
'''

LR_FIND = '''
learn = mk_learner()
suggested = learn.lr_find(num_it=12)
suggested
'''


@pytest.fixture(scope='module')
def fits(kernel_dir, tmp_path_factory):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in (SETUP, FIT, GRAPH, LR_FIND)])
    client = run_nb(nb, kernel_dir, tmp_path_factory.mktemp('run'))
    return client


def test_no_errors(fits):
    for i, msgs in fits.msgs.items():
        assert not of_type(msgs, 'error'), (i, of_type(msgs, 'error'))
        assert not [c for c in of_type(msgs, 'stream') if c['name'] == 'stderr'], (i, of_type(msgs, 'stream'))


def test_html_progress_bar(fits):
    msgs = fits.msgs[1]
    stdout = ''.join(c['text'] for c in of_type(msgs, 'stream') if c['name'] == 'stdout')
    mode, n_train, n_valid = stdout.split()
    assert mode == 'notebook'   # detected in a real kernel, nothing forced
    n_train, n_valid = int(n_train), int(n_valid)
    shown = of_type(msgs, 'display_data')
    updates = of_type(msgs, 'update_display_data')
    # the master bar is shown once (fastprogress also shows its style sheet once), then updated in place
    ids = {display_id(c) for c in shown if '<progress' in html(c)}
    assert len(ids) == 1 and None not in ids, shown
    assert len(shown) <= 2, [html(c)[:200] for c in shown]
    (bar_id,) = ids
    in_place = [c for c in updates if display_id(c) == bar_id]
    assert not [c for c in updates if display_id(c) != bar_id]   # every update goes to the one display
    # the batch bar moves within an epoch (fastprogress redraws at most every 0.2 s after the first 5 batches)
    values = {int(v) for c in in_place for v in re.findall(rf'<progress max="{n_train}" value="(\d+)"', html(c))}
    assert {0, 1, 2, 3, 4, 5} <= values and max(values) == n_train, values
    assert all('<progress' in html(c) for c in in_place[:-1])
    assert any(re.search(r'loss \d+\.\d{4}', html(c)) for c in in_place), 'no running loss next to the batch bar'
    # the live table: the header from before_fit, then one row per epoch as it ends
    tables = [html(c) for c in in_place if '<table' in html(c)]
    assert tables, 'no epoch table'
    final = in_place[-1]
    final_html = html(final)
    assert '<progress' not in final_html   # the bars are gone at the end, the table stays
    assert final_html.count('<th>epoch</th>') == 1 and '<td>epoch</td>' not in final_html   # the header, once
    for name in ('train_loss', 'valid_loss', 'accuracy', 'time'): assert f'<th>{name}</th>' in final_html
    rows = re.findall(r'<tr>\s*<td>(\d+)</td>', final_html)
    assert rows == ['0', '1'], rows
    # the row of epoch 0 was shown while epoch 1 ran (a live table, not written at the end)
    first_row_at = next(i for i, c in enumerate(in_place) if re.search(r'<td>0</td>', html(c)))
    assert '<progress' in html(in_place[first_row_at + 1])
    # what the saved notebook keeps: the few displays, updated, not one output per batch
    assert len(fits.nb.cells[1].outputs) <= 3, fits.nb.cells[1].outputs


def test_show_graph_live(fits):
    msgs = fits.msgs[2]
    pngs = [c for c in of_type(msgs, 'display_data') if 'image/png' in c['data']]
    assert len(pngs) == 1 and display_id(pngs[0]), 'the graph is shown once, with a display id'
    graph_id = display_id(pngs[0])
    redraws = [c for c in of_type(msgs, 'update_display_data') if display_id(c) == graph_id]
    assert len(redraws) >= 3 and all('image/png' in c['data'] for c in redraws), len(redraws)   # after each epoch
    assert len({c['data']['image/png'] for c in redraws}) >= 2, 'the graph did not change between epochs'


def test_lr_find_plot(fits):
    msgs = fits.msgs[3]
    pngs = [c for c in of_type(msgs, 'display_data') if 'image/png' in c['data']]
    assert len(pngs) == 1, len(pngs)
    assert not [c for c in of_type(msgs, 'display_data', 'update_display_data') if '<table' in html(c)], \
        'lr_find wrote an epoch table'
    (result,) = of_type(msgs, 'execute_result')
    assert result['data']['text/plain'].startswith('SuggestedLRs(valley='), result['data']


def test_quickstart_tutorial(kernel_dir, tmp_path):
    "The quick-start tutorial, run as a reader runs it in Jupyter: no errors, its plots and progress bars shown."
    path = ROOT / 'nbs' / 'tutorial.quickstart.ipynb'
    nb = nbformat.read(path, as_version=4)
    client = run_nb(nb, kernel_dir, path.parent, timeout=600)
    errors = [(i, c) for i, msgs in client.msgs.items() for c in of_type(msgs, 'error')]
    assert not errors, errors
    code_cells = [c for c in client.nb.cells if c.cell_type == 'code']
    assert all(c.execution_count is not None for c in code_cells)
    outputs = [o for c in code_cells for o in c.outputs]
    assert not [o for o in outputs if o.output_type == 'stream' and o.name == 'stderr'], 'warnings or errors on stderr'
    pngs = [o for o in outputs if 'image/png' in o.get('data', {})]
    assert len(pngs) >= 4, len(pngs)   # show_batch, lr_find, plot_loss, plot_sched
    fit_cell = next(i for i, c in enumerate(client.nb.cells) if c.cell_type == 'code' and 'fit_one_cycle' in c.source)
    fit_msgs = client.msgs[fit_cell]
    assert any('<progress' in html(c) for c in of_type(fit_msgs, 'display_data'))
    final = of_type(fit_msgs, 'update_display_data')[-1]
    assert html(final).count('<th>epoch</th>') == 1 and '<td>epoch</td>' not in html(final)
    assert re.findall(r'<tr>\s*<td>(\d+)</td>', html(final)) == ['0', '1', '2', '3', '4']
