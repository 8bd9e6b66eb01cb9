"""The built docs site (_docs/, from `make docs`) in a real browser: Debian's Chromium driven by Playwright.

Every page of the sidebar loads without console errors, requests nothing from any host but 127.0.0.1, shows its
images (plots) at a non-zero size, and Sphinx's search finds the callbacks tutorial for `after_epoch`.
A screenshot of each page goes to screenshots/ (CI keeps that folder).
`make test` runs this after `make docs`; `make docs-test` runs it alone.
Skips, saying why, when Chromium or the site is missing, unless FASTCB_DOCS_REQUIRED=1 (set by the Makefile),
which turns a missing site into a failure.
"""
import functools, http.server, os, re, shutil, threading
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


def _need(cond, why):
    if cond: return
    if os.environ.get('FASTCB_DOCS_REQUIRED') == '1' and 'Chromium' not in why: pytest.fail(why)
    pytest.skip(why)


def _build_docs():
    import importlib.util
    spec = importlib.util.spec_from_file_location('build_docs', ROOT / 'docs' / 'build_docs.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def sidebar_pages():
    "The pages of nbs/sidebar.yml, in order, as the site's file names."
    bd = _build_docs()
    return [bd.page_name(p) + '.html' for _, items in bd.read_sidebar() for p in items]


def nav_pages():
    "The pages the navigation of the built home page links to."
    html = (SITE / 'index.html').read_text()
    nav = html[html.index('class="sidebar-tree"'):]
    nav = nav[:nav.index('</div>')]
    return list(dict.fromkeys(re.findall(r'<a class="reference internal" href="([^"#]+)"', nav)))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass


@pytest.fixture(scope='module')
def server():
    _need((SITE / 'index.html').exists(), f"the docs site is not built ({SITE}/index.html is missing): run `make docs` first")
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Quiet, directory=str(SITE)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True); t.start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}/'
    httpd.shutdown(); httpd.server_close()


@pytest.fixture(scope='module')
def browser():
    _need(Path(CHROMIUM).exists(), f"Chromium is not installed ({CHROMIUM} is missing): `apt-get install -y chromium` "
          "(.ci/run does it) to run the browser checks of the docs")
    try: from playwright.sync_api import sync_playwright
    except ImportError: pytest.fail("playwright is not installed: `make venv` installs the dev requirements")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def visit(browser, url, shot=None):
    "Load `url`; return (page, console errors, requests to other hosts, failed requests)."
    ctx = browser.new_context(viewport={'width': 1280, 'height': 900})
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
    return ctx, page, errors, foreign, failed


def test_navigation_is_the_sidebar(server):
    pages = sidebar_pages()
    assert SEARCH_PAGE in pages, f"{SEARCH_PAGE} is not in nbs/sidebar.yml"
    missing = [p for p in pages if not (SITE / p).exists()]
    assert not missing, f"pages of nbs/sidebar.yml missing from the site: {missing}"
    assert set(nav_pages()) | {'index.html'} == set(pages), f"navigation {nav_pages()} vs sidebar.yml {pages}"


def test_every_page_loads_clean(server, browser):
    SHOTS.mkdir(exist_ok=True)
    for f in SHOTS.glob('*.png'): f.unlink()
    problems = []
    for rel in sidebar_pages():
        ctx, page, errors, foreign, failed = visit(browser, server + rel)
        try:
            title = page.title()
            if not page.query_selector('.sidebar-tree a.reference'): problems.append(f"{rel}: no navigation sidebar")
            if not page.query_selector('article h1'): problems.append(f"{rel}: no title (h1)")
            page.wait_for_function('Array.from(document.images).every(i => i.complete)', timeout=10000)
            imgs = page.eval_on_selector_all('article img', 'els => els.map(e => ({src: e.getAttribute("src"), w: e.naturalWidth, h: e.naturalHeight}))')
            bad = [i['src'] for i in imgs if not (i['w'] > 0 and i['h'] > 0)]
            if bad: problems.append(f"{rel}: images that did not load: {bad}")
            if errors: problems.append(f"{rel}: {errors}")
            if foreign: problems.append(f"{rel}: requests to other hosts: {foreign}")
            if failed: problems.append(f"{rel}: failed requests: {failed}")
            page.screenshot(path=str(SHOTS / (rel.replace('/', '__')[:-5] + '.png')), full_page=True)
            assert title
        finally: ctx.close()
    assert not problems, '\n'.join(problems)


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
