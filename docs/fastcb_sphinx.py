"""A small Sphinx extension for the offline site: heading anchors as nbdev makes them, math without MathJax, and
the Python objects of show_doc entries (`fastcb-object`), for the general index and objects.inv."""
import re
from docutils import nodes
from sphinx import addnodes
from sphinx.util.docutils import SphinxDirective


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


_OBJTYPES = {'class', 'exception', 'function', 'method', 'classmethod', 'staticmethod', 'property', 'attribute', 'data'}


class FastcbObject(SphinxDirective):
    """```{fastcb-object} py:method fastcb.learner.Learner.fit``` (written by docs/fastcb_showdoc.py after the heading
    of each show_doc entry): an index entry and a target for the Python object, and the object in Python's domain,
    so it is in objects.inv and the general index. It draws nothing: the entry's heading and signature are markdown."""
    required_arguments = 2
    has_content = False

    def run(self):
        role, fullname = self.arguments
        objtype = role.removeprefix('py:')
        if objtype not in _OBJTYPES or not re.fullmatch(r'[A-Za-z_][\w.]*', fullname):
            raise self.error(f"fastcb-object: expected `py:<one of {sorted(_OBJTYPES)}> dotted.name`, got {role} {fullname}")
        py = self.env.get_domain('py')
        mod, _, name = fullname.rpartition('.')
        while mod and mod.rpartition('.')[2][:1].isupper(): mod, _, name = mod.rpartition('.')[0], '', f"{mod.rpartition('.')[2]}.{name}"
        if fullname in self.state.document.ids: return []   # the same object twice on a page: one target
        target = nodes.target('', '', ids=[fullname])
        self.state.document.note_explicit_target(target)
        res = [target]
        if fullname not in py.objects:   # documented once more elsewhere (fastcb.all, a tutorial): the first entry wins
            py.note_object(fullname, objtype, fullname, location=target)
            label = f"{name}() ({objtype} in {mod})" if objtype not in ('class', 'exception', 'property', 'attribute', 'data') \
                else f"{name} ({objtype} in {mod})"
            res.insert(0, addnodes.index(entries=[('single', label, fullname, '', None)]))
        return res


def setup(app):
    app.add_directive('fastcb-object', FastcbObject)
    app.add_html_math_renderer('fastcb_plain', (_visit_math, None), (_visit_displaymath, None))
    return {'parallel_read_safe': True, 'parallel_write_safe': True, 'version': '1'}
