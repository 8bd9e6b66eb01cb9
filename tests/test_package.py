"The installed package: light import, data shipped inside it, public API complete."
import subprocess, sys, zipfile

def run_py(code):
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout

def test_import_does_not_load_matplotlib_or_fastprogress():
    out = run_py("import sys, fastcb.all; print(sorted(m for m in ('matplotlib', 'fastprogress') if m in sys.modules))")
    assert out.strip() == '[]'

def test_wheel_ships_the_embedded_dataset(tmp_path, root):
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation', '-w', str(tmp_path), str(root)],
                   check=True, capture_output=True)
    wheel = next(tmp_path.glob('fastcb-*.whl'))
    names = zipfile.ZipFile(wheel).namelist()
    assert 'fastcb/datasets/digits.csv.gz' in names and 'fastcb/datasets/README.md' in names
    assert 'fastcb/callback/core.py' in names and 'fastcb/learner.py' in names

def test_every_public_symbol_has_a_docstring():
    import importlib, inspect
    import fastcb.all as a
    undocumented = []
    for name in a.__all__:
        obj = getattr(a, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            if not (obj.__doc__ or '').strip(): undocumented.append(name)
            if inspect.isclass(obj):
                for k, v in vars(obj).items():
                    if not k.startswith('_') and (inspect.isfunction(v) or isinstance(v, property)) and not (v.__doc__ or '').strip():
                        if k in ('name', 'value', 'reset', 'accumulate') or k.startswith(('before_', 'after_', 'cleanup')): continue
                        undocumented.append(f'{name}.{k}')
    assert not undocumented, undocumented
