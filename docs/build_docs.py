"""Build the documentation site into _docs/, offline: `make docs` runs `python docs/build_docs.py`.

nbdev renders its sites with Quarto, which cannot be installed here, so this script does the same job with tools
from PyPI:

1. read `nbs/sidebar.yml`: the pages of the site, their order and their sections;
2. execute each notebook afresh (nbclient and an ipykernel on this Python) into `_docs_build/exec/`, so no output
   is stale; a failing cell stops the build, naming the notebook and the cell;
3. nbdev's own processing (`refresh_quarto_yml`, `_build_modidx`, `nbdev_sidebar`, then the processors that
   `nbdev.serve.proc_nbs` runs: show_doc output, `#| hide`, doc links...) into `_proc/`;
4. translate what only Quarto understands for MyST into `_docs_build/src/`: frontmatter -> title,
   `::: {.callout-*}` -> admonitions, `#| echo/output/include` -> cell tags, `output: asis` -> markdown,
   `sidebar.yml` -> toctree, absolute doc links -> relative ones; a symbol documented twice on a page once;
5. Sphinx + myst-nb (no execution) + furo, with -W (warnings are errors), into `_docs/`;
6. check the site: every internal link and anchor resolves, and no page loads anything from another host.

    python docs/build_docs.py [--jobs N] [--no-exec]

`--no-exec` reuses the notebooks executed by the previous build (to work on the translation or the theme).
"""
from __future__ import annotations
import argparse, html.parser, json, os, posixpath, re, shutil, subprocess, sys, time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from urllib.parse import urlsplit, unquote

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / 'docs'
NBS = ROOT / 'nbs'
BUILD = ROOT / '_docs_build'
EXEC, SRC, DOCTREES = BUILD / 'exec', BUILD / 'src', BUILD / 'doctrees'
PROC = ROOT / '_proc'
OUT = ROOT / '_docs'
KERNEL = 'fastcb-docs'
sys.path.insert(0, str(DOCS))
from fastcb_sphinx import slugify   # noqa: E402  (the anchors MyST makes, so links can be checked before Sphinx)


class DocsError(Exception):
    "A problem that stops the docs build; its message says where and what to do."


def log(msg): print(f"[docs] {msg}", flush=True)


# ---------------------------------------------------------------- settings and pages

def settings() -> dict:
    from configparser import ConfigParser
    cfg = ConfigParser(delimiters=['='])
    cfg.read(ROOT / 'settings.ini', encoding='utf-8')
    return dict(cfg['DEFAULT'])


def page_name(nb_rel: str) -> str:
    "Name of the page (without suffix) nbdev and Quarto give a notebook: `01_learner.ipynb` -> `learner`."
    from nbdev.doclinks import _nbpath2html
    return _nbpath2html(Path(nb_rel)).with_suffix('').as_posix()


def read_sidebar(path: Path = None) -> list[tuple[str | None, list[str]]]:
    """The pages of `nbs/sidebar.yml`, as `[(section caption or None, [notebook paths relative to nbs/])]`, in order.
    Nested sections are flattened into 'Outer / Inner' captions."""
    import yaml
    path = path or NBS / 'sidebar.yml'
    if not path.exists(): raise DocsError(f"{path} is missing: the site is the list of pages it gives")
    data = yaml.safe_load(path.read_text()) or {}
    contents = ((data.get('website') or {}).get('sidebar') or {}).get('contents')
    if not isinstance(contents, list): raise DocsError(f"{path}: expected website: sidebar: contents: [a list of pages]")
    groups: list[tuple[str | None, list[str]]] = []

    def add(caption, item):
        if not groups or groups[-1][0] != caption: groups.append((caption, []))
        groups[-1][1].append(item)

    def walk(items, caption):
        for it in items:
            if isinstance(it, str): add(caption, it)
            elif isinstance(it, dict) and 'section' in it:
                sub = f"{caption} / {it['section']}" if caption else str(it['section'])
                walk(it.get('contents') or [], sub)
            elif isinstance(it, dict) and 'href' in it: add(caption, it['href'])
            elif isinstance(it, dict) and 'contents' in it: walk(it['contents'], caption)
            else: raise DocsError(f"{path}: cannot read the sidebar entry {it!r}")
    walk(contents, None)
    for _, items in groups:
        for it in items:
            if re.match(r'\w+://', it): raise DocsError(f"{path}: {it} is not a page of this site; link it from a page instead")
            if Path(it).suffix not in ('.ipynb', '.md'):
                raise DocsError(f"{path}: {it}: only notebooks (.ipynb) and markdown pages (.md) can be built here")
    return groups


def site_pages(groups) -> list[str]:
    pages = [p for _, items in groups for p in items]
    dup = {p for p in pages if pages.count(p) > 1}
    if dup: raise DocsError(f"nbs/sidebar.yml lists {sorted(dup)} more than once")
    if 'index.ipynb' not in pages and 'index.md' not in pages:
        raise DocsError("nbs/sidebar.yml must list index.ipynb: it is the home page")
    missing = [p for p in pages if not (NBS / p).exists()]
    if missing:
        raise DocsError(f"nbs/sidebar.yml lists {missing}, which do not exist in nbs/: add the notebooks or remove the entries")
    return pages


# ---------------------------------------------------------------- notebook directives

_re_directive = re.compile(r'^\s*#\|\s*([\w-]+)\s*(?::\s*(.*?))?\s*$')


def split_directives(src: str) -> tuple[dict, str]:
    "Quarto/nbdev `#| key: value` lines at the top of a code cell, and the rest of the source."
    lines, d = src.splitlines(), {}
    i = 0
    while i < len(lines):
        m = _re_directive.match(lines[i])
        if m: d[m.group(1)] = (m.group(2) or 'true').strip().strip('"\'').lower() if m.group(2) is not None else 'true'
        elif lines[i].strip(): break
        i += 1
    return d, '\n'.join(lines[i:])


# ---------------------------------------------------------------- 2. execution

def _kernel_spec_dir() -> Path:
    "A kernel spec that runs ipykernel on this very Python (the venv's), whatever kernels the machine has."
    d = BUILD / 'kernels' / KERNEL
    d.mkdir(parents=True, exist_ok=True)
    (d / 'kernel.json').write_text(json.dumps({
        'argv': [sys.executable, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
        'display_name': 'fastcb docs (venv python)', 'language': 'python'}))
    return d.parent


_SETUP_CELL = f"import sys; sys.path.insert(0, {str(DOCS)!r})\nimport fastcb_showdoc; fastcb_showdoc.install()"
_ansi = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')


def execute_notebook(args) -> float:
    "Execute `src` (a notebook in nbs/) into `dst`, in the notebook's folder; return the seconds it took."
    src, dst, kernel_dir, timeout, threads = args
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    if threads: os.environ['OMP_NUM_THREADS'] = str(threads)
    os.environ.setdefault('PYDEVD_DISABLE_FILE_VALIDATION', '1')
    t0 = time.perf_counter()
    nb = nbformat.read(src, as_version=4)
    for i, c in enumerate(nb.cells):
        c.setdefault('id', f'cell-{i}')   # nbdev_clean may drop ids
        if c.cell_type == 'code':
            c.outputs, c.execution_count = [], None
            if split_directives(c.source)[0].get('eval') == 'false':
                c.metadata.setdefault('tags', []).append('skip-execution')
    # show_doc entries as the site shows them (docs/fastcb_showdoc.py); the cell is taken out again below
    nb.cells.insert(0, nbformat.v4.new_code_cell(_SETUP_CELL, id='fastcb-docs-setup'))
    where = {}
    km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]))
    client = NotebookClient(nb, km=km, timeout=timeout, resources={'metadata': {'path': str(Path(src).parent)}},
                            on_cell_start=lambda cell, cell_index: where.update(i=cell_index, cell=cell))
    klog = BUILD / 'kernel-logs' / (Path(src).relative_to(NBS).as_posix().replace('/', '__') + '.log')
    klog.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(klog, 'w') as kerr: client.execute(stderr=kerr)   # the kernel process's own log, not cell output
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:
        i, cell = where.get('i', '?'), where.get('cell')
        if isinstance(i, int): i -= 1   # the setup cell
        first = cell.source.strip().splitlines()[0] if cell is not None and cell.source.strip() else ''
        what = ('timed out' if isinstance(e, CellTimeoutError) else f'killed the kernel (its log: {klog.relative_to(ROOT)})'
                if isinstance(e, DeadKernelError) else 'raised')
        pos = f"cell {i + 1} of {len(nb.cells) - 1}" if isinstance(i, int) else "a cell"
        raise DocsError(f"nbs/{Path(src).relative_to(NBS)}, {pos} (id {getattr(cell, 'id', '?')}: `{first[:80]}`) {what}:\n"
                        f"{_ansi.sub('', str(e))[-4000:]}") from None
    finally:   # nbclient shuts down only the kernels it started itself
        if km.has_kernel: km.shutdown_kernel(now=True)
    nb.cells = [c for c in nb.cells if c.get('id') != 'fastcb-docs-setup']
    for c in nb.cells:
        tags = c.get('metadata', {}).get('tags')
        if tags and 'skip-execution' in tags:
            tags.remove('skip-execution')
            if not tags: del c.metadata['tags']
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dst)
    return time.perf_counter() - t0


def split_title_cell(nb: dict):
    """nbdev turns the first markdown cell into frontmatter and drops the rest of that cell: keep the rest, as a
    cell of its own after the title, so what the author wrote there is on the page (as in the README)."""
    for i, c in enumerate(nb['cells']):
        if c['cell_type'] != 'markdown': continue
        src = ''.join(c['source'])
        m = re.search(r'^#\s+\S.*$', src, re.M)
        if not m: return
        head_end = m.end()
        d = re.search(r'\A\s*\n(>\s+\S.*(?:\n|$))', src[head_end:])
        if d: head_end += d.end()
        rest = src[head_end:].strip('\n')
        before = src[:m.start()].strip()
        if before or not rest.strip(): return
        c['source'] = src[:head_end].rstrip('\n')
        nb['cells'].insert(i + 1, {'cell_type': 'markdown', 'id': f"{c.get('id', 'title')}-rest", 'metadata': {}, 'source': rest})
        return


# ---------------------------------------------------------------- 3. nbdev's processing

def nbdev_process(args):
    "Run nbdev's docs processors (FilterDefaults, as `proc_nbs` does) on `src`, writing `dst`."
    src, dst = args
    import warnings
    import nbdev.serve_drv
    from nbdev.processors import FilterDefaults
    import fastcb_showdoc
    fastcb_showdoc.install()   # nbdev runs the show_doc cells it adds in this process
    dst.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        try: nbdev.serve_drv.main((src, dst, FilterDefaults))
        except Exception as e:
            hint = ''
            if any('containing imports and other code' in str(w.message) for w in ws):
                hint = ("\nnbdev re-runs every cell that contains an import when it processes docs, without the cells "
                        "before it: put the imports of that cell in a cell of their own.")
            where = ''
            m = re.search(r' in cell \d+ :\n(.*)\Z', str(e), re.S)
            if m:   # nbdev counts the cells of the processed notebook: name the cell of the author's notebook instead
                cells = json.loads((NBS / Path(src).relative_to(EXEC)).read_text())['cells']
                i = next((i for i, c in enumerate(cells) if _src(c.get('source')).strip() == m.group(1).strip()), None)
                if i is not None: where = f", cell {i + 1} of {len(cells)} (id {cells[i].get('id', '?')})"
            raise DocsError(f"nbdev's processing of nbs/{Path(src).relative_to(EXEC)}{where} failed: {type(e).__name__}: {e}{hint}") from None
    return [str(w.message).strip() for w in ws if 'containing imports and other code' in str(w.message)]


def nbdev_prepare():
    "What `nbdev_docs` does before processing, minus Quarto: refresh _quarto.yml/nbdev.yml, the module index, the sidebar."
    from nbdev.quarto import refresh_quarto_yml, nbdev_sidebar
    import nbdev.doclinks
    refresh_quarto_yml()
    nbdev.doclinks._build_modidx()
    nbdev_sidebar.__wrapped__(path=NBS)   # does nothing while settings.ini says custom_sidebar = True


# ---------------------------------------------------------------- 4. translation for MyST

_re_fence = re.compile(r'^(\s*)(`{3,}|~{3,})')


def _outside_code(md: str):
    "Yield (is_code, chunk) pieces of markdown, code fences kept whole."
    lines, buf, fence = md.split('\n'), [], None
    out = []
    for line in lines:
        m = _re_fence.match(line)
        if fence is None and m:
            if buf: out.append((False, '\n'.join(buf))); buf = []
            fence = m.group(2)[0] * len(m.group(2)); buf.append(line); continue
        if fence is not None:
            buf.append(line)
            if line.strip().startswith(fence) and line.strip() == line.strip()[0] * len(line.strip()):
                out.append((True, '\n'.join(buf))); buf, fence = [], None
            continue
        buf.append(line)
    if buf: out.append((fence is not None, '\n'.join(buf)))
    return out


def headings(md: str) -> list[str]:
    "Anchors of the headings of a markdown text (as MyST will make them with `slugify`)."
    res = []
    for code, chunk in _outside_code(md):
        if code: continue
        for m in re.finditer(r'^#{1,6}\s+(.+?)\s*#*\s*$', chunk, re.M):
            t = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', m.group(1))
            t = re.sub(r'\{[^}]*\}\s*$', '', t)
            res.append(slugify(t.replace('`', '').replace('*', '')))
        res += re.findall(r'^\(([\w.-]+)\)=\s*$', chunk, re.M)
    return res


_callout_types = {'note': 'note', 'tip': 'tip', 'warning': 'warning', 'important': 'important', 'caution': 'caution'}
_re_div_open = re.compile(r'^(:{3,})\s*\{([^}]*)\}\s*$')
_re_div_close = re.compile(r'^(:{3,})\s*$')


def convert_divs(md: str) -> str:
    """Quarto fenced divs -> MyST: `::: {.callout-note}` (optionally with `title="..."` or a first `## Title` line)
    becomes a `note` admonition; other divs with classes become `container` directives. Code blocks are left alone."""
    lines, res, stack, fence = md.split('\n'), [], [], None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _re_fence.match(line)
        if fence is not None:   # inside a code block
            if line.strip() and line.strip() == fence[0] * len(line.strip()) and len(line.strip()) >= len(fence): fence = None
            res.append(line); i += 1; continue
        if m:
            fence = m.group(2); res.append(line); i += 1; continue
        mo, mc = _re_div_open.match(line), _re_div_close.match(line)
        if mo:
            colons, attrs = mo.group(1), mo.group(2)
            classes = re.findall(r'\.([\w-]+)', attrs)
            title = re.search(r'title\s*=\s*"([^"]*)"', attrs)
            title = title.group(1) if title else None
            kind = next((c[len('callout-'):] for c in classes if c.startswith('callout-')), None)
            if kind is not None:
                kind = _callout_types.get(kind, 'note')
                if title is None and i + 1 < len(lines) and re.match(r'^#{1,6}\s+\S', lines[i + 1]):
                    title = re.sub(r'^#{1,6}\s+', '', lines[i + 1]).strip(); i += 1
                if title: res += [f"{colons}{{admonition}} {title}", f":class: {kind}"]
                else: res.append(f"{colons}{{{kind}}}")
            else: res.append(f"{colons}{{container}} {' '.join(classes)}".rstrip())
            stack.append(colons); res.append('')
            i += 1; continue
        if mc and stack: stack.pop()
        res.append(line); i += 1
    if stack: raise DocsError(f"an unclosed ::: block in:\n{md[:300]}")
    return '\n'.join(res)


class Linker:
    "Rewrites links: nbdev's absolute doc links to relative ones, notebook links to page links."
    def __init__(self, doc_url: str, pages: dict[str, str], anchors: dict[str, set]):
        self.doc_url = doc_url.rstrip('/') + '/'
        self.pages, self.anchors = pages, anchors   # nb path -> page name; page name -> anchors
        self.by_html = {p + '.html': p for p in pages.values()}
        self.notices: list[str] = []

    def _rel(self, here: str, page: str, frag: str = '') -> str:
        rel = posixpath.relpath(page + '.ipynb', posixpath.dirname(here) or '.')
        return rel + (f'#{frag}' if frag else '')

    def target(self, here: str, url: str, auto: bool, text: str = ''):
        "The link to write for `url` on page `here`, or None to leave the text unlinked."
        parts = urlsplit(url)
        if url.startswith(self.doc_url):
            path, frag = url[len(self.doc_url):].split('#', 1) if '#' in url[len(self.doc_url):] else (url[len(self.doc_url):], '')
            page = self.by_html.get(unquote(path) or 'index.html')
            if page is None:
                if auto:
                    self.notices.append(f"{here}: {text} documents {path}, which is not a page of the site (not in nbs/sidebar.yml): left unlinked")
                    return None
                raise DocsError(f"{here}: the link {url} points to {path}, which is not a page of the site")
            frag = slugify(frag) if frag else ''
            if frag and frag not in self.anchors.get(page, ()):
                if auto:
                    self.notices.append(f"{here}: {text} links to {path}#{frag}, which has no such heading: linked to the page")
                    frag = ''
                else: raise DocsError(f"{here}: the link {url} points to a heading #{frag} that {path} does not have")
            if page == here and frag: return '#' + frag
            return self._rel(here, page, frag)
        if parts.scheme or url.startswith(('#', '/', 'mailto:')): return url
        # a relative link written by an author: notebooks and .html pages become page links; myst checks the rest
        path = posixpath.normpath(posixpath.join(posixpath.dirname(here), unquote(parts.path)))
        frag = parts.fragment
        nb_page = self.pages.get(path) or self.by_html.get(path)
        if nb_page is None and path.endswith('.html'): nb_page = self.pages.get(path[:-5] + '.ipynb')
        if nb_page is not None: return self._rel(here, nb_page, frag)
        return url

    _re_link = re.compile(r'(?<!!)\[((?:`[^`]*`|[^\]`])*)\]\(([^)\s]+)\)(\{[^}]*\})?')

    def rewrite(self, here: str, md: str) -> str:
        out = []
        for code, chunk in _outside_code(md):
            if code: out.append(chunk); continue
            def sub(m):
                text, url, attrs = m.group(1), m.group(2), m.group(3)
                auto = url.startswith(self.doc_url) and re.fullmatch(r'`[^`]+`', text) is not None
                t = self.target(here, url, auto, text)
                return text if t is None else f'[{text}]({t})'
            out.append(self._re_link.sub(sub, chunk))
        return '\n'.join(out)


def _src(x) -> str: return ''.join(x) if isinstance(x, list) else (x or '')


def _md_cell(text, **meta): return {'cell_type': 'markdown', 'metadata': meta, 'source': text}


_re_sd_source = re.compile(r'^\[source\]\((\S+?)\)(\{[^}]*\})?\s*$', re.M)


def _clean_showdoc(md: str) -> str:
    """show_doc's markdown, for docutils: its leading rule (`---`), which docutils refuses next to a heading, becomes
    a div (CSS draws the rule) holding the source link; `def SomeClass(` signatures (fastcore's) read `class SomeClass(`."""
    if not re.match(r'\A\s*---\s*\n', md): return md
    md = re.sub(r'\A\s*---\s*\n', '', md)
    m = _re_sd_source.search(md)
    link = f'<a class="showdoc-source reference external" href="{m.group(1)}">source</a>' if m else ''
    if m: md = md[:m.start()] + md[m.end():]
    md = re.sub(r'^(```python\n)def ([A-Z]\w*)\(', r'\1class \2(', md, flags=re.M)
    return f'<div class="showdoc-head">{link}</div>\n\n' + md.lstrip('\n')


_re_show_doc = re.compile(r'\A\s*show_doc\(\s*([\w.]+)\s*[,)]')


def _shown_symbol(cell) -> str | None:
    "The symbol a `show_doc(...)` cell documents (`DataLoaders.from_tensors`), else None."
    if cell['cell_type'] != 'code': return None
    m = _re_show_doc.match(split_directives(_src(cell.get('source')))[1])
    return m.group(1) if m else None


def translate_nb(nb: dict) -> dict:
    """The Quarto-only parts of a processed notebook, in MyST's terms (links are rewritten later, knowing every page).
    A symbol documented twice (nbdev's automatic show_doc after the definition, then the author's own) keeps the last."""
    cells = []
    last_doc = {s: i for i, c in enumerate(nb['cells']) if (s := _shown_symbol(c))}
    for i_cell, c in enumerate(nb['cells']):
        if (s := _shown_symbol(c)) and last_doc[s] != i_cell: continue
        src = _src(c.get('source'))
        if c['cell_type'] == 'raw':
            m = re.match(r'\A---\s*\n(.*?)\n---\s*\Z', src.strip(), re.S)
            if m and not cells:
                import yaml
                fm = yaml.safe_load(m.group(1)) or {}
                md = f"# {fm.get('title', '')}".rstrip()
                if fm.get('description'): md += f"\n\n{{.page-description}}\n{fm['description']}"
                cells.append(_md_cell(md)); continue
            cells.append(c); continue
        if c['cell_type'] == 'markdown':
            if src.strip().startswith('<!-- WARNING: THIS FILE WAS AUTOGENERATED'): continue
            cells.append(_md_cell(convert_divs(src))); continue
        d, code = split_directives(src)
        tags = list(c.get('metadata', {}).get('tags', []))
        if d.get('include') == 'false': continue
        echo, output = d.get('echo', 'true'), d.get('output', 'true')
        outs = c.get('outputs', [])
        if output == 'asis':   # Quarto puts the output in the page as markdown: do the same
            if echo != 'false' and code.strip():
                cells.append({**c, 'source': code, 'outputs': [], 'metadata': {}})
            md = []
            for o in outs:
                if o.get('output_type') == 'stream': md.append(_src(o.get('text')))
                elif 'text/markdown' in o.get('data', {}): md.append(_clean_showdoc(_src(o['data']['text/markdown'])))
                elif 'text/html' in o.get('data', {}): md.append(_src(o['data']['text/html']))
                elif 'text/plain' in o.get('data', {}): md.append(_src(o['data']['text/plain']))
            if md: cells.append(_md_cell(convert_divs('\n\n'.join(md))))
            continue
        if echo == 'false': tags.append('remove-input')
        if output == 'false': tags.append('remove-output')
        if d.get('code-fold') in ('true',): tags.append('hide-input')
        meta = {'tags': tags} if tags else {}
        for o in outs:   # markdown outputs that nbdev linkified are rewritten with the markdown cells
            if 'text/markdown' in o.get('data', {}): o['data']['text/markdown'] = _src(o['data']['text/markdown'])
        if not code.strip() and not outs: continue
        cells.append({'cell_type': 'code', 'execution_count': c.get('execution_count'), 'metadata': meta,
                      'outputs': outs, 'source': code})
    return {'cells': cells, 'metadata': {'kernelspec': {'display_name': 'Python 3', 'language': 'python', 'name': 'python3'},
                                         'language_info': {'name': 'python'}},
            'nbformat': 4, 'nbformat_minor': 5}


def toctree_md(groups, pages: dict[str, str]) -> str:
    "The sidebar's sections as hidden toctrees (furo draws them as the navigation)."
    res = []
    for caption, items in groups:
        names = [pages[p] for p in items if pages[p] != 'index']
        if not names: continue
        opts = ':hidden:\n' + (f':caption: {caption}\n' if caption else '')
        res.append('```{toctree}\n' + opts + '\n' + '\n'.join(names) + '\n```')
    return '\n\n'.join(res)


def translate_all(groups, proc_files: dict[str, Path], doc_url: str) -> list[str]:
    "Write the MyST sources of every page into SRC; return the notices about links."
    pages = {p: page_name(p) for p in proc_files}
    translated, anchors = {}, {}
    for nb_rel, f in proc_files.items():
        name = pages[nb_rel]
        if f.suffix == '.ipynb':
            nb = translate_nb(json.loads(f.read_text()))
            text = '\n\n'.join(_src(c['source']) for c in nb['cells'] if c['cell_type'] == 'markdown')
        else:
            nb = None; text = convert_divs(f.read_text())
        translated[nb_rel] = nb if nb is not None else text
        anchors[name] = set(headings(text))
    linker = Linker(doc_url, pages, anchors)
    if SRC.exists(): shutil.rmtree(SRC)
    for nb_rel, obj in translated.items():
        name = pages[nb_rel]
        if isinstance(obj, dict):
            for c in obj['cells']:
                if c['cell_type'] == 'markdown': c['source'] = linker.rewrite(name, c['source'])
                for o in c.get('outputs', []):
                    if 'text/markdown' in o.get('data', {}): o['data']['text/markdown'] = linker.rewrite(name, o['data']['text/markdown'])
            if name == 'index': obj['cells'].append(_md_cell(toctree_md(groups, pages)))
            for i, c in enumerate(obj['cells']): c['id'] = f'c{i}'
            dst = SRC / (name + '.ipynb'); dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(json.dumps(obj, indent=1, ensure_ascii=False))
        else:
            text = linker.rewrite(name, obj)
            if name == 'index': text += '\n\n' + toctree_md(groups, pages)
            dst = SRC / (name + '.md'); dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(text)
    return linker.notices


# ---------------------------------------------------------------- 6. checks of the built site

class _PageParser(html.parser.HTMLParser):
    _res = {('script', 'src'), ('link', 'href'), ('img', 'src'), ('iframe', 'src'), ('source', 'src'), ('source', 'srcset'),
            ('video', 'src'), ('video', 'poster'), ('audio', 'src'), ('embed', 'src'), ('object', 'data'),
            ('input', 'src'), ('track', 'src'), ('image', 'href'), ('use', 'href'), ('img', 'srcset')}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids, self.links, self.resources, self.styles = set(), [], [], []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ('id', 'name'):
            if a.get(k) and (k == 'id' or tag == 'a'): self.ids.add(a[k])
        if tag == 'a' and a.get('href') is not None: self.links.append(a['href'])
        for (t, k) in self._res:
            if t == tag and a.get(k):
                if tag == 'link' and k == 'href' and not (set((a.get('rel') or '').split()) & {'stylesheet', 'icon', 'preload', 'prefetch', 'modulepreload', 'manifest', 'shortcut', 'apple-touch-icon'}):
                    continue
                self.resources.extend(u.strip().split()[0] for u in a[k].split(',') if u.strip()) if k == 'srcset' else self.resources.append(a[k])
        if a.get('style'): self.styles.append(a['style'])
        if tag == 'style': self._in_style = True

    def handle_endtag(self, tag):
        if tag == 'style': self._in_style = False

    def handle_data(self, data):
        if self._in_style: self.styles.append(data)


_re_css_url = re.compile(r'url\(\s*[\'"]?([^\'")]+)|@import\s+[\'"]([^\'"]+)')


def _is_remote(u: str) -> bool:
    u = u.strip()
    return bool(re.match(r'^[a-zA-Z][\w+.-]*://', u)) or u.startswith('//')


def check_site(out: Path = OUT) -> list[str]:
    "Problems of the built site: internal links or anchors that do not resolve, anything loaded from another host."
    problems, parsed = [], {}
    for f in sorted(out.rglob('*.html')):
        p = _PageParser(); p.feed(f.read_text(encoding='utf-8', errors='replace')); parsed[f] = p
    for f, p in parsed.items():
        rel = f.relative_to(out).as_posix()
        for u in p.resources + [m.group(1) or m.group(2) for s in p.styles for m in _re_css_url.finditer(s)]:
            if u.startswith('data:'): continue
            if _is_remote(u): problems.append(f"{rel} loads {u} from another host")
            elif not (f.parent / unquote(urlsplit(u).path)).exists(): problems.append(f"{rel} loads {u}, which is missing")
        for u in p.links:
            if _is_remote(u) or u.startswith(('mailto:', 'javascript:')) or u == '': continue
            parts = urlsplit(u)
            target = (f.parent / unquote(parts.path)).resolve() if parts.path else f.resolve()
            if target.is_dir(): target = target / 'index.html'
            if not target.exists(): problems.append(f"{rel} links to {u}, which does not exist"); continue
            if parts.fragment and target.suffix == '.html':
                tp = parsed.get(target) or parsed.get(Path(target))
                if tp is None:
                    tp = _PageParser(); tp.feed(target.read_text(encoding='utf-8', errors='replace')); parsed[target] = tp
                if unquote(parts.fragment) not in tp.ids:
                    problems.append(f"{rel} links to {u}, but {target.name} has no #{parts.fragment}")
    for css in sorted(out.rglob('*.css')):
        for m in _re_css_url.finditer(css.read_text(encoding='utf-8', errors='replace')):
            u = m.group(1) or m.group(2)
            if _is_remote(u): problems.append(f"{css.relative_to(out)} loads {u} from another host")
    for js in sorted(out.rglob('*.js')):   # scripts that would fetch or load from a CDN
        text = js.read_text(encoding='utf-8', errors='replace')
        for m in re.finditer(r'''(?:src\s*=|import\s*\(|fetch\s*\(|\.load\s*\()\s*['"](https?:)?//[^'"]+''', text):
            problems.append(f"{js.relative_to(out)} loads from another host: {m.group(0)[:120]}")
    return problems


# ---------------------------------------------------------------- main

def _pool(jobs):
    # One task per process: nbdev's processing starts an IPython shell, which replaces sys.modules['__main__'],
    # so a second task in the same process could no longer find this script's functions.
    return ProcessPoolExecutor(max_workers=jobs, mp_context=get_context('spawn'), max_tasks_per_child=1)


def _run_all(fn, jobs, items, label):
    "Run `fn` on each item in a pool of processes; raise the first DocsError, after the others finished."
    results, errors = {}, []
    with _pool(jobs) as ex:
        futs = {ex.submit(fn, it): key for key, it in items}
        for f in as_completed(futs):
            try: results[futs[f]] = f.result()
            except DocsError as e: errors.append(str(e))
    if errors: raise DocsError(f"{label} failed:\n\n" + '\n\n'.join(errors))
    return results


def build(jobs: int = 2, run: bool = True, timeout: int = 600) -> float:
    t_start = time.perf_counter()
    os.chdir(ROOT)   # nbdev finds settings.ini from the working directory
    cfg = settings()
    groups = read_sidebar()
    pages = site_pages(groups)
    outside = sorted(p.relative_to(NBS).as_posix() for p in NBS.rglob('*.ipynb')
                     if not any(part.startswith(('.', '_')) for part in p.relative_to(NBS).parts)
                     and p.relative_to(NBS).as_posix() not in pages)
    if outside: log(f"NOTE: not in nbs/sidebar.yml, so not in the site: {', '.join(outside)}")
    log(f"{len(pages)} pages: {', '.join(pages)}")
    nb_pages = [p for p in pages if p.endswith('.ipynb')]

    # 2. execute
    if run:
        if EXEC.exists(): shutil.rmtree(EXEC)
        kdir = _kernel_spec_dir()
        threads = 1 if jobs > 1 else None
        order = sorted(nb_pages, key=lambda p: -(NBS / p).stat().st_size)   # big ones first
        t0 = time.perf_counter()
        times = _run_all(execute_notebook, jobs, [(p, (NBS / p, EXEC / p, kdir, timeout, threads)) for p in order], 'Executing the notebooks')
        log(f"executed {len(times)} notebooks in {time.perf_counter() - t0:.0f}s: " +
            ', '.join(f"{p} {t:.0f}s" for p, t in sorted(times.items(), key=lambda x: -x[1])))
    else:
        missing = [p for p in nb_pages if not (EXEC / p).exists()]
        if missing: raise DocsError(f"--no-exec: {missing} were never executed; build once without --no-exec")
    for p in nb_pages:
        f = EXEC / p
        nb = json.loads(f.read_text())
        split_title_cell(nb)
        f.write_text(json.dumps(nb, indent=1, ensure_ascii=False))

    # 3. nbdev
    t0 = time.perf_counter()
    nbdev_prepare()
    if PROC.exists(): shutil.rmtree(PROC)
    PROC.mkdir()
    for f in ('_quarto.yml', 'nbdev.yml', 'sidebar.yml', 'styles.css'):
        if (NBS / f).exists(): shutil.copy2(NBS / f, PROC / f)
    mixed = _run_all(nbdev_process, jobs, [(p, (EXEC / p, PROC / p)) for p in nb_pages], "nbdev's processing")
    for p in pages:
        if p.endswith('.md'): (PROC / p).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(NBS / p, PROC / p)
    for p, ws in sorted(mixed.items()):
        for w in ws:
            first = next((l for l in w.split('---')[1].strip().splitlines() if l.strip()), '') if '---' in w else w
            log(f"NOTE: nbs/{p}: a cell mixes imports and other code, so nbdev re-runs it while processing docs "
                f"(and replaces its output): `{first[:70]}`")
    log(f"nbdev processing: {time.perf_counter() - t0:.0f}s")

    # 4. translate
    doc_url = cfg['doc_host'].rstrip('/') + '/' + cfg.get('doc_baseurl', '').strip('/')
    notices = translate_all(groups, {p: PROC / p for p in pages}, doc_url)
    for n in dict.fromkeys(notices): log(f"NOTE: {n}" + (f" ({notices.count(n)} times)" if notices.count(n) > 1 else ''))

    # 5. sphinx
    t0 = time.perf_counter()
    if OUT.exists(): shutil.rmtree(OUT)
    html = BUILD / 'html'   # myst-nb writes a jupyter_execute/ folder beside the output folder: keep it in BUILD
    if html.exists(): shutil.rmtree(html)
    cmd = [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q', '-E', '-b', 'html', '-j', str(jobs),
           '-c', str(DOCS), '-d', str(DOCTREES), str(SRC), str(html)]
    r = subprocess.run(cmd, cwd=ROOT)
    if r.returncode: raise DocsError("Sphinx failed (warnings are errors): see its messages above; the page named is "
                                     f"{SRC.relative_to(ROOT)}/<page>, made from nbs/<notebook>")
    shutil.move(str(html), str(OUT))
    (OUT / '.nojekyll').touch()
    log(f"sphinx: {time.perf_counter() - t0:.0f}s")

    # 6. check
    problems = check_site(OUT)
    if problems: raise DocsError("The built site has problems:\n  " + '\n  '.join(problems))
    total = time.perf_counter() - t_start
    log(f"site built in {OUT.relative_to(ROOT)}/ in {total:.0f}s ({len(pages)} pages); `make preview` serves it")
    return total


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--jobs', type=int, default=min(2, os.cpu_count() or 1), help='notebooks run at once (default 2)')
    ap.add_argument('--no-exec', action='store_true', help='reuse the notebooks executed by the last build')
    ap.add_argument('--timeout', type=int, default=600, help='seconds a cell may run')
    a = ap.parse_args(argv)
    try: build(a.jobs, run=not a.no_exec, timeout=a.timeout)
    except DocsError as e:
        print(f"\n[docs] ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__': sys.exit(main())
