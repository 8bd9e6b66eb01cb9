"""Sphinx configuration of the offline docs site. docs/build_docs.py runs Sphinx with it (`make docs`);
the sources it reads are the translated notebooks in _docs_build/src/, not nbs/."""
import sys
from configparser import ConfigParser
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

_cfg = ConfigParser(delimiters=['='])
_cfg.read(HERE.parent / 'settings.ini', encoding='utf-8')
_cfg = _cfg['DEFAULT']

project = _cfg['title']
author = _cfg['author']
copyright = _cfg['copyright']
version = release = _cfg['version']

extensions = ['myst_nb', 'fastcb_sphinx']
root_doc = 'index'
language = 'en'

# myst-nb renders the notebooks executed earlier in the build: never execute here.
nb_execution_mode = 'off'
nb_merge_streams = True
nb_render_markdown_format = 'myst'
nb_ipywidgets_js = {}            # its default loads require.js and the widget manager from CDNs
myst_enable_extensions = ['colon_fence', 'attrs_block', 'attrs_inline']
myst_heading_anchors = 6
myst_heading_slug_func = 'fastcb_sphinx.slugify'   # the anchors nbdev's doc links use (Quarto's): `Learner.fit` -> #learner.fit

html_theme = 'furo'
pygments_dark_style = 'monokai'   # furo's default (native) underlines class and module names: `torch._dynamo` lost its underscore
html_title = project
html_static_path = ['_static']
html_favicon = '_static/favicon.svg'
html_css_files = ['fastcb.css']
html_js_files = ['copybutton.js']   # copy buttons on code, without sphinx-copybutton's dependencies
html_copy_source = False
html_show_sourcelink = False
html_last_updated_fmt = None
html_math_renderer = 'fastcb_plain'   # MathJax would come from a CDN: math shows as its TeX source instead
html_theme_options = {
    'navigation_with_keys': True,
}
