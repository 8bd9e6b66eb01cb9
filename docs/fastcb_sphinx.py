"""A small Sphinx extension for the offline site: heading anchors as nbdev makes them, and math without MathJax."""
import re
from docutils import nodes


def slugify(text: str) -> str:
    "Pandoc's (so Quarto's and nbdev's) heading identifiers: `Learner.fit` -> `learner.fit`."
    s = ''.join(ch for ch in text if ch.isalnum() or ch in '_-. \n\t')
    s = re.sub(r'\s+', '-', s.strip()).lower()
    return re.sub(r'^[^a-z]+', '', s)


def _visit_math(self, node):
    self.body.append(self.starttag(node, 'code', '', CLASS='math notranslate') + self.encode(node.astext()) + '</code>')
    raise nodes.SkipNode


def _visit_displaymath(self, node):
    self.body.append(self.starttag(node, 'pre', CLASS='math notranslate') + self.encode(node.astext()) + '</pre>\n')
    raise nodes.SkipNode


def setup(app):
    app.add_html_math_renderer('fastcb_plain', (_visit_math, None), (_visit_displaymath, None))
    return {'parallel_read_safe': True, 'parallel_write_safe': True, 'version': '1'}
