"README.md is generated from nbs/index.ipynb and must not go stale."
import importlib.util, json, re

def load_make_readme(root):
    spec = importlib.util.spec_from_file_location('make_readme', root / 'docs' / 'make_readme.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

def test_readme_has_every_cell_of_the_index_notebook(root):
    mk = load_make_readme(root)
    nb = json.loads((root / 'nbs' / 'index.ipynb').read_text())
    readme = (root / 'README.md').read_text()
    expected = mk.render(nb)   # sources only: outputs come from executing the notebook
    blocks = [b for b in expected.split('\n\n') if b.strip()]
    missing = [b[:80] for b in blocks if b not in readme]
    assert not missing, f"README.md is stale, run `make readme`; missing: {missing}"

def test_readme_opens_with_the_two_commands(root):
    readme = (root / 'README.md').read_text()
    first_code = re.search(r'```sh\n(.*?)```', readme, re.S).group(1)
    assert [l.split()[:2] for l in first_code.strip().splitlines()] == [['make', 'demo'], ['make', 'test']]

def test_readme_shows_the_example_output(root):
    readme = (root / 'README.md').read_text()
    assert re.search(r'^epoch\s+train_loss\s+valid_loss', readme, re.M), "README lacks the example's executed output"
