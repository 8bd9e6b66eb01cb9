"""Write README.md from nbs/index.ipynb: its markdown, its code and (after running it) its outputs.

nbdev_readme needs Quarto, which this project cannot install, so this small script does the same job:
the notebook is executed with nbclient, so the outputs in the README are real and current.
    python docs/make_readme.py [--no-exec]
"""
import json, os, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIRECTIVE = re.compile(r'^#\|\s*(\w+)(?::\s*(\S+))?')

def cell_directives(src):
    return {m.group(1): m.group(2) or 'true' for m in map(DIRECTIVE.match, src.splitlines()) if m}

def strip_directives(src): return '\n'.join(l for l in src.splitlines() if not DIRECTIVE.match(l)).strip()

def output_text(out):
    if out['output_type'] == 'stream': return ''.join(out['text'])
    data = out.get('data', {})
    if 'text/markdown' in data: return None   # rendered below as markdown
    plain = ''.join(data.get('text/plain', ''))
    if plain.startswith('<IPython.core.display'): return ''   # a rich object with no text form
    if plain: return plain
    return ''

def render(nb):
    parts = []
    for cell in nb['cells']:
        src = ''.join(cell['source'])
        d = cell_directives(src)
        if cell['cell_type'] == 'markdown':
            parts.append(src.strip()); continue
        if 'hide' in d or d.get('include') == 'false' or 'default_exp' in d: continue
        code = strip_directives(src)
        if code and d.get('echo') != 'false': parts.append(f"```python\n{code}\n```")
        if d.get('output') == 'false': continue
        texts = [t for t in (output_text(o) for o in cell.get('outputs', [])) if t]
        if texts: parts.append("```\n" + ''.join(texts).rstrip() + "\n```")
    return '\n\n'.join(parts) + '\n'

def execute(nb):
    import nbformat
    from nbclient import NotebookClient
    for i, c in enumerate(nb['cells']): c.setdefault('id', f'cell-{i}')   # nbdev_clean drops ids
    nb = nbformat.reads(json.dumps(nb), as_version=4)
    NotebookClient(nb, timeout=600, kernel_name='python3', resources={'metadata': {'path': str(ROOT / 'nbs')}}).execute()
    return nb

def main(run=True):
    os.environ['FASTCB_PROGRESS'] = 'plain'   # the README shows the plain log, not HTML progress bars
    nb = json.loads((ROOT / 'nbs' / 'index.ipynb').read_text())
    if run: nb = json.loads(json.dumps(execute(nb)))
    text = "<!-- Generated from nbs/index.ipynb by docs/make_readme.py: edit the notebook, not this file. -->\n\n" + render(nb)
    (ROOT / 'README.md').write_text(text)
    return text

if __name__ == '__main__': main(run='--no-exec' not in sys.argv)
