"""How `show_doc` entries look on the docs site (docs/build_docs.py installs this renderer in the kernels that execute
the notebooks and in nbdev's processing; `nbdev_test` and Jupyter keep nbdev's own).

nbdev's renderer takes the signature from fastcore's `docments`, which gives a class that inherits `object.__init__`
the signature `(*args, **kwargs)`, calls the type of `x=None` `NoneType`, prints function defaults as
`<function f at 0x...>` and loses the class of methods wrapped by `contextmanager`. This one shows, docs.fast.ai's
way: the source link, a heading with the qualified name, the real signature (`inspect.signature`, which follows
inheritance), the docstring, and a table of the arguments (type, default, meaning) when the code has docments
comments. Each entry also declares a Python object (the `fastcb-object` directive of docs/fastcb_sphinx.py), so the
general index and objects.inv list every documented symbol.
"""
from __future__ import annotations
import inspect, re
from types import FunctionType, MethodType

__all__ = ['render', 'FastcbRenderer', 'install']

_empty = inspect.Parameter.empty
_re_addr = re.compile(r'<(?:function|class|bound method|built-in function|built-in method)?\s*([\w.<>]+)(?: of .*?)? at 0x[0-9a-fA-F]+>')
MAXLINE = 100


def _qualname(o) -> str: return getattr(o, '__qualname__', None) or getattr(o, '__name__', None) or type(o).__name__


def fmt_anno(a) -> str:
    "An annotation as a reader writes it: `int|None`, `nn.Module`, `Callback`, never `NoneType` or `typing.`."
    if a is _empty: return ''
    if isinstance(a, str): s = a
    elif a is type(None): s = 'None'
    elif isinstance(a, type) and not getattr(a, '__args__', None): s = a.__qualname__
    else: s = inspect.formatannotation(a)
    s = s.strip('\'"').replace('NoneType', 'None').replace('typing.', '')
    s = re.sub(r'\b(?:fastcb|torch\.optim\.\w+|collections\.abc|pathlib)\.(?:[\w]+\.)*(\w+)', r'\1', s)
    return re.sub(r'\s*\|\s*', '|', s)


def fmt_default(v) -> str:
    "A default value as code: functions and classes by name, no memory addresses."
    if isinstance(v, (FunctionType, type)) or inspect.isbuiltin(v): return _qualname(v)
    if isinstance(v, MethodType): return _qualname(v.__func__)
    if isinstance(v, tuple) and v: return '(' + ', '.join(fmt_default(o) for o in v) + (',)' if len(v) == 1 else ')')
    if isinstance(v, list): return '[' + ', '.join(fmt_default(o) for o in v) + ']'
    if isinstance(v, str) and len(v) > 60: v = v[:57] + '...'
    return _re_addr.sub(lambda m: m.group(1), repr(v))


def _unwrap(sym):
    "What to read the signature and source of: a property's getter, a contextmanager's function, a bound method's function."
    if isinstance(sym, property): sym = sym.fget or sym.fset
    while hasattr(sym, '__wrapped__') and not hasattr(sym, '__signature__'): sym = sym.__wrapped__
    return sym


def kind_of(sym) -> str:
    "The Python domain's object type for `sym`."
    if inspect.isclass(sym): return 'exception' if issubclass(sym, BaseException) else 'class'
    if isinstance(sym, property): return 'property'
    if isinstance(sym, MethodType) and inspect.isclass(sym.__self__): return 'classmethod'
    if callable(sym):
        q = _qualname(_unwrap(sym)) if '.' in _qualname(sym) else _qualname(sym)
        return 'method' if '.' in _qualname(sym) and '<locals>' not in q else 'function'
    return 'data'


def _init_owner(cls):
    "The `__init__` a class really uses (inherited ones included), or None for `object`'s."
    for c in cls.__mro__:
        if '__init__' in c.__dict__: return None if c is object else c.__dict__['__init__']
    return None


def _docments(fn) -> dict:
    "The docments comments of `fn` (argument -> text; 'return' too), {} when there are none or no source."
    if fn is None: return {}
    try:
        from fastcore.docments import docments
        # args_kwargs: `*args`/`**kwargs` comments too (without it their text is dropped, or given to the return)
        return {k: v for k, v in docments(fn, full=False, args_kwargs=True).items() if v}
    except Exception: return {}


def _exported_module(qualname: str) -> str | None:
    "The module of the package that exports `qualname` (nbdev's index of the package), for symbols a notebook defines."
    try:
        from importlib import import_module
        from nbdev.config import get_config
        syms = import_module(f"{get_config().lib_name}._modidx").d['syms']
    except Exception: return None
    found = next((mod for mod, names in syms.items() if f'{mod}.{qualname}' in names), None)
    if found: return found
    top = qualname.split('.')[0]   # made at run time (`X = make_class(...)`): the index lists no such def, `__all__` does
    for mod in syms:
        try:
            m = import_module(mod)
            if top in getattr(m, '__all__', ()): return getattr(getattr(m, top), '__module__', None) or mod   # where it is made
        except Exception: continue
    return None


class Entry:
    "Everything shown for one symbol."
    def __init__(self, sym, name: str | None = None):
        self.sym = sym
        self.target = _unwrap(sym)
        self.kind = kind_of(sym)
        self.name = name or _qualname(sym if not isinstance(sym, property) else self.target)
        if isinstance(sym, MethodType) and inspect.isclass(sym.__self__) and '.' not in self.name:
            self.name = f'{sym.__self__.__qualname__}.{self.name}'
        self.module = getattr(self.target, '__module__', None) or getattr(sym, '__module__', None) or type(sym).__module__
        if self.module in ('__main__', 'builtins', None):   # defined by the notebook being run: the module it exports to
            self.module = _exported_module(self.name) or ''
        self.fullname = f'{self.module}.{self.name}' if self.module else self.name
        self.params, self.returns = self._signature()
        self.comments = _docments(_init_owner(self.target) if inspect.isclass(self.target) else self.target)

    def _signature(self):
        o = self.target
        if not callable(o) or self.kind in ('property', 'data'): return None, _empty
        try: sig = inspect.signature(o)   # string annotations stay as written (`nn.Module`, `float|None`)
        except (TypeError, ValueError): return None, _empty
        ps = list(sig.parameters.values())
        if ps and ps[0].name in ('self', 'cls') and not inspect.isclass(o) and not isinstance(self.sym, MethodType): ps = ps[1:]
        return ps, sig.return_annotation

    def short_name(self) -> str:
        return self.name if inspect.isclass(self.target) else self.name.rsplit('.', 1)[-1]

    def signature(self) -> str | None:
        "`class Name(a:int=1, b=None)` / `def name(...)`, on several lines when long."
        if self.params is None: return None
        parts, P = [], inspect.Parameter
        kinds = [p.kind for p in self.params]
        for i, p in enumerate(self.params):
            if p.kind == P.KEYWORD_ONLY and P.VAR_POSITIONAL not in kinds and P.KEYWORD_ONLY not in kinds[:i]: parts.append('*')
            pre = '*' if p.kind == P.VAR_POSITIONAL else '**' if p.kind == P.VAR_KEYWORD else ''
            s = pre + p.name + (f':{fmt_anno(p.annotation)}' if p.annotation is not _empty else '')
            if p.default is not _empty: s += '=' + fmt_default(p.default)
            parts.append(s)
            if p.kind == P.POSITIONAL_ONLY and P.POSITIONAL_ONLY not in kinds[i + 1:]: parts.append('/')
        prefix = 'class' if inspect.isclass(self.target) else 'async def' if inspect.iscoroutinefunction(self.target) else 'def'
        ret = f' -> {fmt_anno(self.returns)}' if self.returns not in (_empty, None) and not inspect.isclass(self.target) else ''
        one = f"{prefix} {self.short_name()}({', '.join(parts)}){ret}"
        if len(one) <= MAXLINE or not parts: return one
        return f"{prefix} {self.short_name()}(\n" + ''.join(f"    {s},\n" for s in parts) + f"){ret}"

    def table(self) -> str:
        "The arguments as docs.fast.ai shows them: name, type, default, meaning; '' without docments comments."
        if not self.comments or not self.params: return ''
        esc = lambda s: s.replace('|', '\\|').replace('\n', ' ')
        rows = ['| argument | type | default | meaning |', '|---|---|---|---|']
        for p in self.params:
            pre = '*' if p.kind == p.VAR_POSITIONAL else '**' if p.kind == p.VAR_KEYWORD else ''
            t = fmt_anno(p.annotation) if p.annotation is not _empty else (
                type(p.default).__name__ if p.default not in (_empty, None) and not callable(p.default) else '')
            d = '' if p.default is _empty else fmt_default(p.default)
            rows.append(f"| `{pre}{p.name}` | {f'`{esc(t)}`' if t else ''} | {f'`{esc(d)}`' if d else ''} | {esc(self.comments.get(p.name, ''))} |")
        if self.comments.get('return'):
            t = fmt_anno(self.returns) if self.returns not in (_empty, None) else ''
            rows.append(f"| **returns** | {f'`{esc(t)}`' if t else ''} |  | {esc(self.comments['return'])} |")
        return '\n'.join(rows)

    def docstring(self) -> str:
        d = inspect.getdoc(self.target) if self.kind != 'data' else None
        if self.kind == 'class' and d == inspect.getdoc(object): d = None
        if not d: return ''
        first, _, rest = d.partition('\n')
        return f"*{first.strip()}*" + (f"\n{rest}" if rest.strip() else '')

    def source(self) -> str | None:
        "The link to the code on GitHub (nbdev's module index gives the file, `inspect` the line)."
        try:
            from nbdev.doclinks import NbdevLookup
            look = NbdevLookup()
            res = next((r for n in (self.fullname, f"{self.module}.{_qualname(self.target)}") if isinstance(r := look[n], tuple)), None)
            if res is None and self.module:   # made at run time (`X = make_class(...)`): nbdev's index has only its module
                res = next((r for k, r in look.syms.items() if k.startswith(self.module + '.') and isinstance(r, tuple)
                            and k.count('.') == self.module.count('.') + 1), None)
            if res is None: return None
            return res[2] + (f'#L{line}' if (line := self._line()) else '')
        except ImportError: return None

    def _line(self) -> int | None:
        "The line of the definition in the package's module (a notebook's own copy of the code has no file)."
        for o in (self.target, self._in_package()):
            try: return inspect.getsourcelines(_unwrap(o))[1]
            except (OSError, TypeError): continue
        try:   # a module-level assignment `Name = ...`
            from importlib import import_module
            lines = inspect.getsource(import_module(self.module)).splitlines()
        except Exception: return None
        top = self.name.split('.')[0]
        return next((i + 1 for i, l in enumerate(lines) if re.match(rf'{re.escape(top)}\s*(:[^=]*)?=', l)), None)

    def _in_package(self):
        "The object of the same name in the exported module, or None."
        try:
            from importlib import import_module
            o = import_module(self.module)
            for part in self.name.split('.'): o = getattr(o, part)
            return o
        except Exception: return None

    def markdown(self, title_level: int = 3) -> str:
        src = self.source()
        link = f'<a class="showdoc-source reference external" href="{src}">source</a>' if src else ''
        heading = re.sub(r'([_*`\[\]<>])', r'\\\1', self.name)
        out = [f'<div class="showdoc-head showdoc-{self.kind}">{link}</div>', '', f"{'#' * title_level} {heading}", '',
               f"```{{fastcb-object}} py:{self.kind} {self.fullname}\n```"]
        if (sig := self.signature()):
            out += ['', "```{code-block} python\n:class: showdoc-signature\n" + sig + "\n```"]
        if (d := self.docstring()): out += ['', d]
        if (t := self.table()): out += ['', t]
        return '\n'.join(out) + '\n'


class FastcbRenderer:
    "A `show_doc` renderer (`nbdev.showdoc.show_doc(sym, renderer=FastcbRenderer)`): the entry as markdown."
    def __init__(self, sym, name: str | None = None, title_level: int = 3):
        self.entry, self.title_level = Entry(sym, name), title_level
        self.nm, self.fn = self.entry.name, self.entry.fullname   # what nbdev's renderers call these

    def _repr_markdown_(self): return self.entry.markdown(self.title_level)
    def __repr__(self): return self.entry.signature() or self.entry.name


def render(sym, name: str | None = None, title_level: int = 3) -> str:
    "The markdown of the `show_doc` entry of `sym`."
    return FastcbRenderer(sym, name, title_level)._repr_markdown_()


def install():
    "Make nbdev's `show_doc` use this renderer in this process (its default renderer is looked up at each call)."
    import nbdev.showdoc
    nbdev.showdoc.BasicMarkdownRenderer = FastcbRenderer
