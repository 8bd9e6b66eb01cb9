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

def _internal_imports(path, pkg_dir) -> set:
    "The fastcb modules that the module at `path` imports anywhere in it (inside functions too), as dotted names."
    import ast
    mod = '.'.join(path.relative_to(pkg_dir.parent).with_suffix('').parts).removesuffix('.__init__')
    package = mod if path.name == '__init__.py' else mod.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import): names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:   # relative: resolved against the module's package
                parts = package.split('.')
                base = '.'.join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]   # `from . import x` may name a module
        else: continue
        found.update(n for n in names if n.startswith('fastcb'))
    return found

def test_no_import_cycles(root):
    "Modules import only from modules below them: no cycle among fastcb's modules, imports inside functions included."
    pkg = root / 'fastcb'
    mods = {'.'.join(p.relative_to(root).with_suffix('').parts).removesuffix('.__init__'): p for p in pkg.rglob('*.py')}
    mods = {m: p for m, p in mods.items() if m not in ('fastcb._modidx', 'fastcb.all')}   # the index; the re-exports
    graph = {m: {i for i in _internal_imports(p, pkg) if i in mods and i != m} for m, p in mods.items()}
    cycles, state = [], {}
    def visit(m, stack):
        state[m] = 'open'
        for n in sorted(graph[m]):
            if state.get(n) == 'open': cycles.append(stack[stack.index(n):] + [n])
            elif n not in state: visit(n, stack + [n])
        state[m] = 'done'
    for m in sorted(graph):
        if m not in state: visit(m, [m])
    assert not cycles, 'import cycles: ' + '; '.join(' -> '.join(c) for c in cycles)
