"""The built docs site (_docs/, from `make docs`) as a reader sees it, in a real browser: Debian's Chromium driven
by Playwright.

Every page of the sidebar is loaded in light and in dark mode and checked for what a reader would notice
(`page_problems` says what each check catches). All problems of all pages are collected and reported together, as
`page: problem` lines, so one run shows everything. A screenshot of each page in each mode goes to screenshots/.
`test_checks_catch_a_broken_page` proves the checks: it breaks a copy of one built page in every way they look for
and asserts that each one is reported.

`make docs-test` (and so `make test`) runs this after `make docs`; it installs Chromium first where it can, and
sets FASTCB_DOCS_REQUIRED=1, which turns a missing browser or site into a failure instead of a skip.
"""
import contextlib, functools, http.server, os, re, shutil, struct, threading, zlib
from pathlib import Path
from urllib.parse import urlsplit
import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / '_docs'
SHOTS = ROOT / 'screenshots'
CHROMIUM = os.environ.get('FASTCB_CHROMIUM') or shutil.which('chromium') or '/usr/bin/chromium'
ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
        '--disable-sync', '--no-first-run', '--disable-dev-shm-usage']
SEARCH_TERM, SEARCH_PAGE = 'after_epoch', 'tutorial.callbacks.html'
WIDTHS = (1280, 1400, 1920)   # viewport widths that must not scroll sideways
MIN_CONTRAST = 4.5            # WCAG AA for normal text
INSTALL_HINT = "install it with `apt-get update && apt-get install -y chromium` (as root; `make docs-test` does it)"


def _need(cond, why):
    "Skip when `cond` is false, or fail when the Makefile asked for the check (FASTCB_DOCS_REQUIRED=1)."
    if cond: return
    if os.environ.get('FASTCB_DOCS_REQUIRED') == '1': pytest.fail(why)
    pytest.skip(why)


def _build_docs():
    import importlib.util
    spec = importlib.util.spec_from_file_location('build_docs', ROOT / 'docs' / 'build_docs.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def sidebar_notebooks():
    "The notebooks of nbs/sidebar.yml, in order, with the site's file name of each: [(notebook, page.html)]."
    bd = _build_docs()
    return [(p, bd.page_name(p) + '.html') for _, items in bd.read_sidebar() for p in items]


def sidebar_pages(): return [html for _, html in sidebar_notebooks()]


def api_pages():
    "Pages of the API: the numbered notebooks (`01_learner.ipynb`), one per module."
    return {html for nb, html in sidebar_notebooks() if re.match(r'\d+_', Path(nb).name)}


def nav_pages():
    "The pages the navigation of the built home page links to."
    html = (SITE / 'index.html').read_text()
    nav = html[html.index('class="sidebar-tree"'):]
    nav = nav[:nav.index('</div>')]
    return list(dict.fromkeys(re.findall(r'<a class="reference internal" href="([^"#]+)"', nav)))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass


@contextlib.contextmanager
def serve(directory: Path):
    "Serve `directory` on 127.0.0.1 (a free port) for the duration of the block; yield its base URL."
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Quiet, directory=str(directory)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True); t.start()
    try: yield f'http://127.0.0.1:{httpd.server_address[1]}/'
    finally: httpd.shutdown(); httpd.server_close()


@pytest.fixture(scope='module')
def server():
    _need((SITE / 'index.html').exists(), f"the docs site is not built ({SITE}/index.html is missing): run `make docs` first")
    with serve(SITE) as url: yield url


@pytest.fixture(scope='module')
def browser():
    _need(Path(CHROMIUM).exists(), f"Chromium is not installed ({CHROMIUM} is missing): {INSTALL_HINT}")
    try: from playwright.sync_api import sync_playwright
    except ImportError: pytest.fail("playwright is not installed: `make venv` installs the dev requirements")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def visit(browser, url, dark=False, width=1280):
    "Load `url`; return (context, page, console errors, requests to other hosts, failed requests)."
    ctx = browser.new_context(viewport={'width': width, 'height': 900}, color_scheme='dark' if dark else 'light')
    # furo keeps the reader's choice in localStorage: set it, so the page is in the mode asked for whatever its default
    ctx.add_init_script(f"try {{ localStorage.setItem('theme', '{'dark' if dark else 'light'}') }} catch (e) {{}}")
    page = ctx.new_page()
    errors, foreign, failed = [], [], []
    page.on('console', lambda m: errors.append(f'console {m.type}: {m.text}') if m.type == 'error' else None)
    page.on('pageerror', lambda e: errors.append(f'page error: {e}'))
    def on_request(r):
        u = urlsplit(r.url)
        if u.scheme in ('data', 'blob', 'about'): return
        if u.hostname != '127.0.0.1': foreign.append(r.url)
    page.on('request', on_request)
    page.on('requestfailed', lambda r: failed.append(f'{r.url} ({r.failure})'))
    page.on('response', lambda r: failed.append(f'{r.url} (HTTP {r.status})') if r.status >= 400 else None)
    page.goto(url, wait_until='networkidle')
    page.wait_for_function('Array.from(document.images).every(i => i.complete)', timeout=15000)
    return ctx, page, errors, foreign, failed


# ---------------------------------------------------------------- the checks, in the page

# Text a reader should never see in what a page renders (cell outputs, show_doc entries): everything in the article
# except the code of the cells.
_JS_RENDERED_TEXT = """() => {
  const art = document.querySelector('article'); if (!art) return '';
  const copy = art.cloneNode(true);
  copy.querySelectorAll('.cell_input, .headerlink, script, style').forEach(e => e.remove());
  return copy.innerText;
}"""

_JS_PROGRESS = """() => Array.from(document.querySelectorAll(
    'article .cell_output progress, article .cell_output .progress-bar-interrupted, article .cell_output [class*="progress-bar"]'
  )).length"""

_JS_OVERFLOW = """() => {
  const d = document.documentElement, res = [];
  if (d.scrollWidth > d.clientWidth) res.push(`the page is ${d.scrollWidth}px wide in a ${d.clientWidth}px window (horizontal scrollbar)`);
  for (const sel of ['.toc-drawer', '.content', 'article']) {
    const e = document.querySelector(sel); if (!e) continue;
    const r = e.getBoundingClientRect(), st = getComputedStyle(e);
    // a drawer furo slides in from the edge on narrow screens is meant to be off screen until opened
    if (st.position === 'fixed') continue;
    if (st.display !== 'none' && st.visibility !== 'hidden' && r.width > 0 && r.right > d.clientWidth + 1)
      res.push(`${sel} ends at ${Math.round(r.right)}px, past the window's ${d.clientWidth}px`);
  }
  return res;
}"""

# Contrast of the text of tables (WCAG 2 relative luminance), against the background really behind it: the
# backgrounds of the element and its ancestors composited up to the first opaque one (the body's otherwise).
_JS_CONTRAST = """(minRatio) => {
  const parse = c => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const over = (top, bottom) => { const a = top[3]; return [0, 1, 2].map(i => top[i] * a + bottom[i] * (1 - a)).concat([1]); };
  const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const background = el => { const layers = [];
    for (let n = el; n && n.nodeType === 1; n = n.parentElement) {
      const bg = parse(getComputedStyle(n).backgroundColor);
      if (bg && bg[3] > 0) { layers.push(bg); if (bg[3] >= 1) break; } }
    let c = (layers.length && layers[layers.length - 1][3] >= 1) ? layers.pop() : [255, 255, 255, 1];
    while (layers.length) c = over(layers.pop(), c);
    return c; };
  const res = [], seen = new Set();
  for (const el of document.querySelectorAll('article table *')) {
    const own = Array.from(el.childNodes).filter(n => n.nodeType === 3).map(n => n.textContent).join('').trim();
    if (!own) continue;
    const st = getComputedStyle(el); if (st.visibility === 'hidden' || st.display === 'none') continue;
    const bg = background(el), fg = over(parse(st.color), bg);
    const l1 = lum(fg), l2 = lum(bg), ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    if (ratio < minRatio) {
      const key = `${st.color} on ${bg.slice(0, 3).map(Math.round).join(',')}`;
      if (seen.has(key)) continue; seen.add(key);
      res.push(`table text "${own.slice(0, 30)}" has contrast ${ratio.toFixed(2)}:1 (${st.color} on rgb(${bg.slice(0, 3).map(Math.round).join(',')}))`);
    }
  }
  return res;
}"""

# An image whose pixels are (almost) all one colour: a plot that drew nothing. Decoded in the page, via a canvas.
_JS_BLANK_IMAGES = """() => Array.from(document.querySelectorAll('article img')).filter(i => i.naturalWidth > 0).map(img => {
  const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  let d; try { d = g.getImageData(0, 0, c.width, c.height).data; } catch (e) { return [img.getAttribute('src'), -1]; }
  const counts = new Map(); let top = 0;
  for (let i = 0; i < d.length; i += 4) {
    const k = (d[i] << 24) ^ (d[i + 1] << 16) ^ (d[i + 2] << 8) ^ d[i + 3], n = (counts.get(k) || 0) + 1;
    counts.set(k, n); if (n > top) top = n; }
  return [img.getAttribute('src'), top / (d.length / 4)];
}).filter(([src, share]) => share < 0 || share > 0.998)"""

# Signatures rendered for public symbols: code blocks outside the cells' code that start with `def name(` or
# `class Name(` (show_doc's), the name not private.
_JS_SIGNATURES = """() => Array.from(document.querySelectorAll('article pre')).filter(p => !p.closest('.cell_input'))
  .map(p => p.innerText).filter(t => /^\\s*(async\\s+def|def|class)\\s+(?!_)[\\w.]+\\(/.test(t))"""

# The symbols a page documents: the headings of its show_doc entries.
# The heading of a show_doc entry: the next heading after its `.showdoc-head` in document order (the entry's own
# section often starts after the div, which then ends the section before).
_JS_ENTRY_HEADING = """const entryHeading = h => {
  const isH = e => /^H[1-6]$/.test(e.tagName);
  for (let n = h; n && n.tagName !== 'ARTICLE'; n = n.parentElement) {
    for (let s = n.nextElementSibling; s; s = s.nextElementSibling) {
      if (s.classList.contains('showdoc-head')) return null;
      const hd = isH(s) ? s : s.querySelector('h1,h2,h3,h4,h5,h6');
      if (hd) return hd.textContent.replace(/[#\\u00b6]/g, '').trim();
    }
  }
  return null; };"""

# The symbols a page documents: the headings of its show_doc entries.
_JS_SHOWDOC_NAMES = "() => { " + _JS_ENTRY_HEADING + """
  return Array.from(document.querySelectorAll('article .showdoc-head')).map(entryHeading).filter(Boolean); }"""

# show_doc entries of code (docs/fastcb_showdoc.py marks each with its kind) that have no link to their source.
_JS_NO_SOURCE = "() => { " + _JS_ENTRY_HEADING + """
  return Array.from(document.querySelectorAll('article .showdoc-head')).filter(h =>
    /showdoc-(class|exception|function|method|classmethod|staticmethod|property)\\b/.test(h.className) && !h.querySelector('a.showdoc-source'))
  .map(h => entryHeading(h) || '?'); }"""

_JS_CONTENT = """() => {
  const art = document.querySelector('article'); if (!art) return {text: 0, tables: 0, entries: 0};
  const copy = art.cloneNode(true);
  copy.querySelectorAll('h1, .page-description, .cell_input, script, style').forEach(e => e.remove());
  return {text: copy.innerText.trim().length, tables: art.querySelectorAll('table').length,
          entries: art.querySelectorAll('.showdoc-head').length};
}"""

_JS_NO_COPY = """() => Array.from(document.querySelectorAll('article div.highlight'))
  .filter(b => !b.closest('.cell_output') && !b.querySelector('button.fastcb-copy')).length"""

_JS_RAW_DIVS = """() => Array.from(document.querySelectorAll('article p')).map(p => p.innerText).filter(t => /^:::/.test(t.trim()))"""

_re_temp = re.compile(r'/tmp/|/var/folders/|\btmp[a-z0-9_]{6,}\b')
_re_addr = re.compile(r'\b0x[0-9a-fA-F]{6,}\b')
# Notes of the repository that are not pages of the site; the two a reader of GitHub sees at the root are fine.
_re_offsite_doc = re.compile(r'\bDESIGN\b(?:\.md)?|(?<![\w.-])[\w./-]*[\w-]\.md\b')
_REPO_DOCS = {'README.md', 'CONTRIBUTING.md'}
_re_args_kwargs = re.compile(r'\*args\s*,\s*\*\*kwargs')


def page_problems(page, rel, api: bool) -> list[str]:
    "What is wrong with the loaded page `rel` (light mode); `api`: it documents a module."
    problems = []
    if not page.query_selector('.sidebar-tree a.reference'): problems.append("no navigation sidebar")
    if not page.query_selector('article h1'): problems.append("no title (h1)")
    if api and (n := page.evaluate(_JS_PROGRESS)):
        problems.append(f"{n} progress bars in cell outputs (fit test learners with `with learn.no_bar():`, or hide the output)")
    text = page.evaluate(_JS_RENDERED_TEXT)
    for what, rx in (('a temporary path', _re_temp), ('a memory address', _re_addr), ('a UserWarning', re.compile(r'UserWarning'))):
        hits = list(dict.fromkeys(m.group(0) for m in rx.finditer(text)))
        if hits:
            m = rx.search(text)
            problems.append(f"{what} in rendered output ({len(hits)}: {', '.join(hits[:3])}): …{text[max(0, m.start() - 60):m.end() + 30]!r}…")
    refs = list(dict.fromkeys(m.group(0) for m in _re_offsite_doc.finditer(text) if m.group(0) not in _REPO_DOCS))
    if refs: problems.append(f"points readers to {refs}, which are not pages of the site (link a page, or CONTRIBUTING.md)")
    imgs = page.eval_on_selector_all('article img', 'els => els.map(e => ({src: e.getAttribute("src"), w: e.naturalWidth, h: e.naturalHeight}))')
    bad = [i['src'] for i in imgs if not (i['w'] > 0 and i['h'] > 0)]
    if bad: problems.append(f"images that did not load: {bad}")
    for src, share in page.evaluate(_JS_BLANK_IMAGES):
        problems.append(f"an image with no drawn content: {src} " + ("(cannot be read)" if share < 0 else f"({share:.1%} one colour)"))
    for sig in page.evaluate(_JS_SIGNATURES):
        first = sig.strip().splitlines()[0][:100]
        if _re_args_kwargs.search(sig): problems.append(f"a signature with `*args, **kwargs`: {first}")
        if 'NoneType' in sig: problems.append(f"a signature with `NoneType`: {first}")
    if (n := page.evaluate(_JS_NO_COPY)): problems.append(f"{n} blocks of code without a copy button")
    if (t := page.evaluate(_JS_RAW_DIVS)): problems.append(f"a callout or div that did not render (its `:::` shows): {t[0][:80]!r}")
    if (n := page.evaluate(_JS_NO_SOURCE)): problems.append(f"documented code without a source link: {n}")
    names = page.evaluate(_JS_SHOWDOC_NAMES)
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup: problems.append(f"documented more than once on the page: {dup}")
    if api:
        c = page.evaluate(_JS_CONTENT)
        if not (c['entries'] or c['tables']):
            problems.append(f"an empty API page: no documented symbol and no table ({c['text']} characters of text)")
    return problems


def layout_problems(page) -> list[str]:
    res = []
    for w in WIDTHS:
        page.set_viewport_size({'width': w, 'height': 900})
        page.wait_for_timeout(50)
        res += [f"at {w}px: {p}" for p in page.evaluate(_JS_OVERFLOW)]
    return res


def dark_problems(page) -> list[str]:
    res = []
    if page.evaluate("() => document.body.dataset.theme") != 'dark': res.append("dark mode could not be switched on")
    res += [f"dark mode: {p}" for p in page.evaluate(_JS_CONTRAST, MIN_CONTRAST)]
    return res


def index_problems(site: Path, documented: dict[str, list[str]]) -> list[tuple[str, str]]:
    """The general index and objects.inv: Python objects in both, and one for each symbol a page documents
    (`documented`: page -> the names of its show_doc entries)."""
    from sphinx.util.inventory import InventoryFile
    res = []
    inv_path = site / 'objects.inv'
    if not inv_path.exists(): return [('objects.inv', 'missing')]
    with open(inv_path, 'rb') as f: inv = InventoryFile.load(f, '', posixpath_join)
    py = {name: item for kind, items in _inv_items(inv) if kind.startswith('py:') for name, item in items}
    if not py: res.append(('objects.inv', 'no Python objects (py:class, py:function...): nothing for intersphinx or the index'))
    for rel, names in documented.items():
        for n in names:
            if not any(k == n or k.endswith('.' + n) for k in py):
                res.append((rel, f"`{n}` is documented but is not a Python object of objects.inv"))
    gi = site / 'genindex.html'
    if not gi.exists(): res.append(('genindex.html', 'missing'))
    elif not re.search(r'<table[^>]*class="[^"]*indextable', gi.read_text()) or len(re.findall(r'<a href="[^"]+#', gi.read_text())) == 0:
        res.append(('genindex.html', 'the general index is empty'))
    return res


def posixpath_join(a, b): return f'{a}/{b}' if a else b


def _inv_items(inv):
    "(kind, [(name, item)]) of an inventory, for Sphinx's old (dict) and new (object) inventory types."
    data = getattr(inv, 'data', inv)
    if isinstance(data, dict): return [(k, list(v.items())) for k, v in data.items()]
    return [(k, list(v.items())) for k, v in dict(inv).items()]


def site_problems(browser, base: str, site: Path, pages: list[str], api: set[str], shots: Path | None = None) -> list[tuple[str, str]]:
    "Every check on every page of `pages` (served at `base` from `site`): [(page, problem)]."
    res, documented = [], {}
    for rel in pages:
        ctx, page, errors, foreign, failed = visit(browser, base + rel)
        try:
            res += [(rel, p) for p in page_problems(page, rel, rel in api)]
            if errors: res.append((rel, f"console errors: {errors}"))
            if foreign: res.append((rel, f"requests to other hosts: {foreign}"))
            if failed: res.append((rel, f"failed requests: {failed}"))
            if not page.title(): res.append((rel, "no <title>"))
            documented[rel] = page.evaluate(_JS_SHOWDOC_NAMES)
            if shots: page.screenshot(path=str(shots / (rel.replace('/', '__')[:-5] + '.png')), full_page=True)
            res += [(rel, p) for p in layout_problems(page)]
        finally: ctx.close()
        ctx, page, *_ = visit(browser, base + rel, dark=True)
        try:
            res += [(rel, p) for p in dark_problems(page)]
            if shots: page.screenshot(path=str(shots / (rel.replace('/', '__')[:-5] + '.dark.png')), full_page=True)
        finally: ctx.close()
    return res + index_problems(site, documented)


def _report(problems): return f"{len(problems)} problems:\n" + '\n'.join(f"  {p}: {q}" for p, q in problems)


# ---------------------------------------------------------------- the tests

def test_navigation_is_the_sidebar(server):
    pages = sidebar_pages()
    assert SEARCH_PAGE in pages, f"{SEARCH_PAGE} is not in nbs/sidebar.yml"
    missing = [p for p in pages if not (SITE / p).exists()]
    assert not missing, f"pages of nbs/sidebar.yml missing from the site: {missing}"
    assert set(nav_pages()) | {'index.html'} == set(pages), f"navigation {nav_pages()} vs sidebar.yml {pages}"


def test_every_page_reads_well(server, browser):
    SHOTS.mkdir(exist_ok=True)
    for f in SHOTS.glob('*.png'): f.unlink()
    problems = site_problems(browser, server, SITE, sidebar_pages(), api_pages(), SHOTS)
    assert not problems, _report(problems)


def test_search_finds_the_callbacks_tutorial(server, browser):
    ctx, page, errors, foreign, failed = visit(browser, server + f'search.html?q={SEARCH_TERM}')
    try:
        page.wait_for_selector(f'#search-results ul.search li a[href*="{SEARCH_PAGE[:-5]}"]', timeout=20000)
        hits = page.eval_on_selector_all('#search-results ul.search li a', 'els => els.map(e => e.getAttribute("href"))')
        assert any(SEARCH_PAGE[:-5] in h for h in hits), hits
        page.screenshot(path=str(SHOTS / 'search.png'), full_page=False)
        assert not errors, errors
        assert not foreign, foreign
    finally: ctx.close()


def _png(w, h, rgb) -> bytes:
    "A `w`x`h` PNG of one colour."
    raw = b''.join(b'\x00' + bytes(rgb) * w for _ in range(h))
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))


# What the broken page gets, and what the checks must say about it.
_BREAKAGE = {
    'progress bar': ('<div class="cell_output docutils container"><div class="output text_html"><progress value="3" max="10" '
                     'class="progress-bar-interrupted"></progress> 30.00% [3/10 00:01&lt;00:02]</div></div>', 'progress bars in cell outputs'),
    'memory address': ('<div class="cell_output docutils container"><div class="output text_plain highlight-myst-ansi notranslate">'
                       '<pre>&lt;fastcb.learner.Learner at 0x7f3a2b1c4d50&gt;</pre></div></div>', 'a memory address in rendered output'),
    'temporary path': ('<div class="cell_output docutils container"><pre>saved to /tmp/tmpa1b2c3d4/model.pth</pre></div>',
                       'a temporary path in rendered output'),
    'warning': ('<div class="cell_output docutils container"><pre>hook.py:12: UserWarning: Full backward hook is firing</pre></div>',
                'a UserWarning in rendered output'),
    'wide element': ('<div style="width: 2600px; height: 10px; background: #888"></div>', 'horizontal scrollbar'),
    'unreadable dark table': ('<div class="cell_output docutils container"><table class="dataframe"><thead><tr><th>epoch</th>'
                              '<th>train_loss</th></tr></thead><tbody><tr style="background-color: #f5f5f5"><td>0</td>'
                              '<td>0.1234</td></tr></tbody></table></div>', 'dark mode: table text'),
    'blank image': ('<div class="cell_output docutils container"><img alt="blank" src="_images/broken-blank.png"></div>',
                    'an image with no drawn content: _images/broken-blank.png'),
    '*args, **kwargs signature': ('<div class="showdoc-head showdoc-class"></div><section><h3>Broken</h3><div class="highlight-python notranslate">'
                                  '<div class="highlight"><pre>class Broken(*args, **kwargs)</pre></div></div></section>',
                                  'a signature with `*args, **kwargs`: class Broken('),
    'code without a source link': ('', "documented code without a source link: ['Broken']"),   # the entry above
    'symbol documented twice': ('<div class="showdoc-head"></div><section><h3>Broken</h3></section>', "documented more than once on the page: ['Broken']"),
    'reference to a file not on the site': ('<p>See DESIGN, section 7, and <code>fastcb/datasets/README.md</code>.</p>',
                                            "points readers to ['DESIGN', 'fastcb/datasets/README.md']"),
    'unrendered callout': ('<p>::: {.callout-note}</p>', 'a callout or div that did not render'),
    'page without copy buttons': ('', 'blocks of code without a copy button'),   # its script is taken out below
    'NoneType signature': ('<div class="highlight-python notranslate"><div class="highlight"><pre>def broken_fn(x:NoneType=None)'
                           '</pre></div></div>', 'a signature with `NoneType`: def broken_fn('),
}


def test_checks_catch_a_broken_page(server, browser, tmp_path):
    "A copy of the site with one page broken in every way the checks look for, an empty API page and an empty inventory."
    site = tmp_path / 'site'
    shutil.copytree(SITE, site)
    api = sorted(api_pages())
    broken, emptied = api[0], api[1]
    html = (site / broken).read_text()
    i = html.index('</article>')
    html = html[:i] + '\n'.join(b for b, _ in _BREAKAGE.values()) + html[i:]
    html, n = re.subn(r'<script src="_static/copybutton\.js[^"]*"></script>', '', html)
    assert n == 1, f"{broken} does not load _static/copybutton.js"
    (site / broken).write_text(html)
    (site / '_images').mkdir(exist_ok=True)
    (site / '_images' / 'broken-blank.png').write_bytes(_png(120, 80, (255, 255, 255)))
    # an API page that documents nothing: the title, its summary and a paragraph of prose only
    html = (site / emptied).read_text()
    a, b = html.index('<article'), html.index('</article>')
    a = html.index('>', a) + 1
    (site / emptied).write_text(html[:a] + '<section><h1>Empty</h1><p class="page-description">Nothing here.</p>'
                                '<p>Every module adds itself here.</p></section>' + html[b:])
    # an inventory with no Python object, and an empty general index
    (site / 'objects.inv').write_bytes(b'# Sphinx inventory version 2\n# Project: fastcb\n# Version: 0\n'
                                       b'# The remainder of this file is compressed using zlib.\n'
                                       + zlib.compress(b'index std:doc -1 index.html Home\n'))
    gi = (site / 'genindex.html').read_text()
    gi = re.sub(r'<table[^>]*indextable.*?</table>', '', gi, flags=re.S)
    (site / 'genindex.html').write_text(gi)
    with serve(site) as base:
        problems = site_problems(browser, base, site, [broken, emptied], set(api))
    report = _report(problems)
    on_broken = [q for p, q in problems if p == broken]
    for what, (_, said) in _BREAKAGE.items():
        assert any(said in q for q in on_broken), f"the check for a {what} did not report it on {broken}:\n{report}"
    for w in WIDTHS: assert any(q.startswith(f'at {w}px: ') for q in on_broken), f"no overflow reported at {w}px:\n{report}"
    assert any(p == emptied and 'an empty API page' in q for p, q in problems), report
    assert any(p == 'objects.inv' and 'no Python objects' in q for p, q in problems), report
    assert any(p == 'genindex.html' and 'empty' in q for p, q in problems), report
    assert any(p == broken and 'is documented but is not a Python object' in q for p, q in problems), report
