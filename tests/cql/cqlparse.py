"""cqlparse - tokenizer and recursive-descent parser for the CQL subset.

parse(text) returns one statement node (a small class below). Bind markers are
numbered in order of appearance (Bind.index); the parser records how many
there are in node.nbind. Unquoted identifiers are lower-cased, quoted ones
keep their case. Errors are SYNTAX_ERROR CqlErrors "line L:C ...".
"""
import re

from cqltypes import SyntaxErr, Invalid, UNSUPPORTED_TYPES, NATIVE

_TOKEN_RE = re.compile(r"""
 (?P<ws>\s+|--[^\n]*|//[^\n]*|/\*.*?\*/)
|(?P<str>'(?:[^']|'')*')
|(?P<dstr>\$\$.*?\$\$)
|(?P<qid>"(?:[^"]|"")*")
|(?P<uuid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![0-9a-zA-Z_]))
|(?P<hex>0[xX][0-9a-fA-F]*)
|(?P<float>-?\d+\.\d*(?:[eE][+-]?\d+)?|-?\d+[eE][+-]?\d+)
|(?P<int>-?\d+)
|(?P<id>[a-zA-Z][a-zA-Z0-9_]*)
|(?P<bind>\?)
|(?P<named>:[a-zA-Z][a-zA-Z0-9_]*)
|(?P<op><=|>=|!=|[(),;.=*{}\[\]:<>+\-])
""", re.S | re.X)


class Tok:
    __slots__ = ("kind", "text", "pos")

    def __init__(self, kind, text, pos):
        self.kind = kind
        self.text = text
        self.pos = pos

    def __repr__(self):
        return "%s(%r)" % (self.kind, self.text)


def _where(text, pos):
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1)
    return line, col


def tokenize(text):
    toks = []
    pos = 0
    n = len(text)
    match = _TOKEN_RE.match
    while pos < n:
        m = match(text, pos)
        if not m:
            line, col = _where(text, pos)
            raise SyntaxErr("line %d:%d token recognition error at: '%s'" % (line, col, text[pos:pos + 10]))
        kind = m.lastgroup
        if kind != "ws":
            toks.append(Tok(kind, m.group(), pos))
        pos = m.end()
    toks.append(Tok("eof", "<EOF>", n))
    return toks


# ---- AST --------------------------------------------------------------------

class Node:
    kind = None
    nbind = 0

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __repr__(self):
        return "%s(%s)" % (self.__class__.__name__, self.__dict__)


class Bind(Node):
    """A bind marker: index (position among markers), name (None for '?')."""


class Lit(Node):
    """A constant: kind in str/int/float/uuid/hex/bool, text."""


class Null(Node):
    pass


class Func(Node):
    """name(args) — now(), uuid(), ..."""


class Coll(Node):
    """Collection literal {..} / [..] (only in DDL options)."""


class CreateKeyspace(Node):
    kind = "create_keyspace"


class CreateTable(Node):
    kind = "create_table"


class AlterTable(Node):
    kind = "alter_table"


class Drop(Node):
    kind = "drop"


class Truncate(Node):
    kind = "truncate"


class Use(Node):
    kind = "use"


class Insert(Node):
    kind = "insert"


class Update(Node):
    kind = "update"


class Delete(Node):
    kind = "delete"


class Select(Node):
    kind = "select"


class Batch(Node):
    kind = "batch"


# ---- parser -----------------------------------------------------------------

class Parser:
    def __init__(self, text):
        self.text = text
        self.toks = tokenize(text)
        self.i = 0
        self.nbind = 0

    # -- helpers
    def peek(self, k=0):
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def next(self):
        t = self.toks[self.i]
        if t.kind != "eof":
            self.i += 1
        return t

    def error(self, tok=None, expecting=None):
        tok = tok or self.peek()
        line, col = _where(self.text, tok.pos)
        if expecting:
            return SyntaxErr("line %d:%d mismatched input '%s' expecting %s" % (line, col, tok.text, expecting))
        return SyntaxErr("line %d:%d no viable alternative at input '%s'" % (line, col, tok.text))

    def at_kw(self, *words, k=0):
        t = self.peek(k)
        return t.kind == "id" and t.text.lower() in words

    def accept_kw(self, *words):
        if self.at_kw(*words):
            return self.next().text.lower()
        return None

    def kw(self, *words):
        if not self.at_kw(*words):
            raise self.error(expecting="K_" + words[0].upper())
        return self.next().text.lower()

    def at_op(self, o, k=0):
        t = self.peek(k)
        return t.kind == "op" and t.text == o

    def accept_op(self, o):
        if self.at_op(o):
            self.next()
            return True
        return False

    def op(self, o):
        if not self.at_op(o):
            raise self.error(expecting="'%s'" % o)
        return self.next()

    def ident(self, what="identifier"):
        t = self.peek()
        if t.kind == "id":
            self.next()
            return t.text.lower()
        if t.kind == "qid":
            self.next()
            return t.text[1:-1].replace('""', '"')
        raise self.error(expecting=what)

    def qualified(self):
        """[ks.]name -> (ks or None, name)."""
        a = self.ident()
        if self.accept_op("."):
            return a, self.ident()
        return None, a

    def end(self):
        self.accept_op(";")
        t = self.peek()
        if t.kind != "eof":
            raise self.error(t)

    # -- terms
    def term(self):
        t = self.peek()
        k = t.kind
        if k == "bind":
            self.next()
            b = Bind(index=self.nbind, name=None, pos=t.pos)
            self.nbind += 1
            return b
        if k == "named":
            self.next()
            b = Bind(index=self.nbind, name=t.text[1:].lower(), pos=t.pos)
            self.nbind += 1
            return b
        if k == "str":
            self.next()
            return Lit(kind="str", text=t.text[1:-1].replace("''", "'"))
        if k == "dstr":
            self.next()
            return Lit(kind="str", text=t.text[2:-2])
        if k in ("int", "float", "uuid", "hex"):
            self.next()
            return Lit(kind=k, text=t.text)
        if k == "id":
            w = t.text.lower()
            if w in ("true", "false"):
                self.next()
                return Lit(kind="bool", text=w)
            if w == "null":
                self.next()
                return Null()
            if w in ("nan", "infinity"):
                self.next()
                return Lit(kind="float", text=w)
            if self.at_op("(", 1):
                self.next()
                self.next()
                args = []
                if not self.at_op(")"):
                    args.append(self.term())
                    while self.accept_op(","):
                        args.append(self.term())
                self.op(")")
                return Func(name=w, args=args)
        if k == "op":
            if t.text == "-" and self.at_kw("infinity", "nan", k=1):
                self.next()
                w = self.next().text.lower()
                return Lit(kind="float", text="-" + w)
            if t.text in ("{", "["):
                return self.collection()
        raise self.error(t)

    def collection(self):
        close = "}" if self.next().text == "{" else "]"
        items = []
        is_map = False
        if not self.at_op(close):
            while True:
                k = self.term()
                if self.accept_op(":"):
                    is_map = True
                    items.append((k, self.term()))
                else:
                    items.append(k)
                if not self.accept_op(","):
                    break
        self.op(close)
        return Coll(map=is_map, items=items)

    # -- statements
    def statement(self):
        t = self.peek()
        if t.kind != "id":
            raise self.error(t)
        w = t.text.lower()
        if w == "select":
            s = self.select()
        elif w == "insert":
            s = self.insert()
        elif w == "update":
            s = self.update()
        elif w == "delete":
            s = self.delete()
        elif w == "begin":
            s = self.batch()
        elif w == "create":
            s = self.create()
        elif w == "drop":
            s = self.drop()
        elif w == "alter":
            s = self.alter()
        elif w == "truncate":
            self.next()
            self.accept_kw("table", "columnfamily")
            ks, name = self.qualified()
            s = Truncate(ks=ks, table=name)
        elif w == "use":
            self.next()
            s = Use(ks=self.ident("keyspace name"))
        else:
            raise self.error(t)
        return s

    def using(self, node, allow_ttl=True):
        node.ttl = None
        node.ts = None
        if not self.accept_kw("using"):
            return
        while True:
            w = self.kw("ttl", "timestamp") if allow_ttl else self.kw("timestamp")
            val = self.term()
            if isinstance(val, Bind) and val.name is None:
                val.name = "[%s]" % w
            if w == "ttl":
                node.ttl = val
            else:
                node.ts = val
            if not self.accept_kw("and"):
                break

    def select(self):
        self.kw("select")
        sel = []
        json_ = self.accept_kw("json")
        if json_:
            raise Invalid("SELECT JSON is not supported by cqlserver")
        if self.accept_kw("distinct"):
            raise Invalid("SELECT DISTINCT is not supported by cqlserver")
        if self.accept_op("*"):
            sel = None
        else:
            while True:
                sel.append(self.selector())
                if not self.accept_op(","):
                    break
        self.kw("from")
        ks, table = self.qualified()
        where = self.where() if self.accept_kw("where") else []
        if self.at_kw("group", "order"):
            raise Invalid("ORDER BY / GROUP BY are not supported by cqlserver")
        limit = None
        if self.accept_kw("per"):
            raise Invalid("PER PARTITION LIMIT is not supported by cqlserver")
        if self.accept_kw("limit"):
            limit = self.term()
            if isinstance(limit, Bind) and limit.name is None:
                limit.name = "[limit]"
        allow = False
        if self.accept_kw("allow"):
            self.kw("filtering")
            allow = True
        self.end()
        return Select(ks=ks, table=table, selectors=sel, where=where, limit=limit, allow_filtering=allow)

    def selector(self):
        t = self.peek()
        if t.kind == "id" and self.at_op("(", 1):
            fn = t.text.lower()
            self.next()
            self.next()
            if fn == "count":
                if not (self.accept_op("*") or self.peek().kind == "int" and self.next()):
                    arg = self.ident()
                    s = ("count", arg)
                else:
                    s = ("count", None)
            elif fn in ("ttl", "writetime"):
                s = (fn, self.ident())
            else:
                raise Invalid("Unknown function '%s'" % fn)
            self.op(")")
        else:
            s = ("col", self.ident())
        alias = None
        if self.accept_kw("as"):
            alias = self.ident()
        return s + (alias,)

    def where(self):
        rels = []
        while True:
            t = self.peek()
            if t.kind == "op" and t.text == "(":
                raise Invalid("Multi-column relations are not supported by cqlserver")
            if self.at_kw("token") and self.at_op("(", 1):
                raise Invalid("token() restrictions are not supported by cqlserver")
            col = self.ident()
            opt = self.peek()
            if opt.kind == "id" and opt.text.lower() in ("in", "contains", "like"):
                raise Invalid("%s restrictions are not supported by cqlserver (only =)" % opt.text.upper())
            if opt.kind != "op" or opt.text not in ("=", "<", ">", "<=", ">=", "!="):
                raise self.error(opt)
            self.next()
            if opt.text != "=":
                raise Invalid("Only = restrictions are supported by cqlserver (got %s on %s)" % (opt.text, col))
            val = self.term()
            if isinstance(val, Bind) and val.name is None:
                val.name = col
            rels.append((col, val, t.pos))
            if not self.accept_kw("and"):
                break
        return rels

    def insert(self):
        self.kw("insert")
        self.kw("into")
        ks, table = self.qualified()
        if self.at_kw("json"):
            raise Invalid("INSERT JSON is not supported by cqlserver")
        self.op("(")
        cols = [self.ident()]
        while self.accept_op(","):
            cols.append(self.ident())
        self.op(")")
        self.kw("values")
        self.op("(")
        vals = [self.term()]
        while self.accept_op(","):
            vals.append(self.term())
        self.op(")")
        for c, v in zip(cols, vals):
            if isinstance(v, Bind) and v.name is None:
                v.name = c
        ine = False
        if self.accept_kw("if"):
            self.kw("not")
            self.kw("exists")
            ine = True
        node = Insert(ks=ks, table=table, columns=cols, values=vals, if_not_exists=ine)
        self.using(node)
        self.end_or_batch()
        return node

    def update(self):
        self.kw("update")
        ks, table = self.qualified()
        node = Update(ks=ks, table=table)
        self.using(node)
        self.kw("set")
        assigns = []
        while True:
            col = self.ident()
            self.op("=")
            val = self.term()
            if self.at_op("+") or self.at_op("-"):
                raise Invalid("Counter/collection updates (%s = %s +/- ...) are not supported by cqlserver" % (col, col))
            if isinstance(val, Bind) and val.name is None:
                val.name = col
            assigns.append((col, val))
            if not self.accept_op(","):
                break
        if self.at_op("["):
            raise Invalid("Collection element updates are not supported by cqlserver")
        self.kw("where")
        node.assignments = assigns
        node.where = self.where()
        if self.accept_kw("if"):
            raise Invalid("Conditional updates (IF ...) are not supported by cqlserver")
        self.end_or_batch()
        return node

    def delete(self):
        self.kw("delete")
        cols = []
        if not self.at_kw("from"):
            cols.append(self.ident())
            if self.at_op("["):
                raise Invalid("Collection element deletes are not supported by cqlserver")
            while self.accept_op(","):
                cols.append(self.ident())
        self.kw("from")
        ks, table = self.qualified()
        node = Delete(ks=ks, table=table, columns=cols)
        self.using(node, allow_ttl=False)
        self.kw("where")
        node.where = self.where()
        if self.accept_kw("if"):
            raise Invalid("Conditional deletes (IF ...) are not supported by cqlserver")
        self.end_or_batch()
        return node

    def end_or_batch(self):
        if getattr(self, "in_batch", False):
            self.accept_op(";")
        else:
            self.end()

    def batch(self):
        self.kw("begin")
        btype = self.accept_kw("unlogged", "logged", "counter") or "logged"
        self.kw("batch")
        node = Batch(type=btype, statements=[])
        self.using(node, allow_ttl=False)
        self.in_batch = True
        while not self.at_kw("apply"):
            if self.at_kw("insert"):
                node.statements.append(self.insert())
            elif self.at_kw("update"):
                node.statements.append(self.update())
            elif self.at_kw("delete"):
                node.statements.append(self.delete())
            else:
                raise self.error(expecting="K_APPLY")
        self.in_batch = False
        self.kw("apply")
        self.kw("batch")
        self.end()
        return node

    def if_not_exists(self):
        if self.accept_kw("if"):
            self.kw("not")
            self.kw("exists")
            return True
        return False

    def if_exists(self):
        if self.accept_kw("if"):
            self.kw("exists")
            return True
        return False

    def create(self):
        self.kw("create")
        what = self.kw("keyspace", "schema", "table", "columnfamily", "index", "type", "function",
                       "aggregate", "materialized", "custom", "trigger", "role", "user", "or")
        if what in ("keyspace", "schema"):
            ine = self.if_not_exists()
            name = self.ident("keyspace name")
            self.kw("with")
            props = self.properties()
            self.end()
            return CreateKeyspace(name=name, if_not_exists=ine, props=props)
        if what in ("table", "columnfamily"):
            return self.create_table()
        raise Invalid("CREATE %s is not supported by cqlserver" % what.upper())

    def cql_type(self):
        t = self.peek()
        name = self.ident("type")
        if self.at_op("<"):
            depth = 0
            parts = [name]
            while True:
                tok = self.next()
                if tok.kind == "eof":
                    raise self.error(tok)
                parts.append(tok.text)
                if tok.text == "<":
                    depth += 1
                elif tok.text == ">":
                    depth -= 1
                    if depth == 0:
                        break
            name = "".join(parts)
        return name, t

    def create_table(self):
        ine = self.if_not_exists()
        ks, name = self.qualified()
        self.op("(")
        cols = []
        pk = []
        ck = []
        while True:
            if self.at_kw("primary") and self.at_kw("key", k=1):
                self.next()
                self.next()
                self.op("(")
                if self.accept_op("("):
                    pk.append(self.ident())
                    while self.accept_op(","):
                        pk.append(self.ident())
                    self.op(")")
                else:
                    pk.append(self.ident())
                while self.accept_op(","):
                    ck.append(self.ident())
                self.op(")")
            else:
                cname = self.ident("column name")
                tname, tok = self.cql_type()
                base = tname.split("<")[0].lower()
                if base in UNSUPPORTED_TYPES:
                    raise Invalid("Type %s (column %s) is not supported by cqlserver" % (tname, cname))
                if base not in NATIVE:
                    raise Invalid("Unknown type %s" % tname)
                cols.append((cname, base))
                if self.accept_kw("static"):
                    raise Invalid("Static columns are not supported by cqlserver")
                if self.at_kw("primary"):
                    self.next()
                    self.kw("key")
                    if pk:
                        raise Invalid("Multiple PRIMARY KEYs specified (exactly one required)")
                    pk.append(cname)
            if not self.accept_op(","):
                break
            if self.at_op(")"):
                break
        self.op(")")
        order = []
        props = {}
        if self.accept_kw("with"):
            while True:
                if self.accept_kw("clustering"):
                    self.kw("order")
                    self.kw("by")
                    self.op("(")
                    while True:
                        c = self.ident()
                        d = self.accept_kw("asc", "desc") or "asc"
                        order.append((c, d))
                        if not self.accept_op(","):
                            break
                    self.op(")")
                elif self.accept_kw("compact"):
                    self.kw("storage")
                    raise Invalid("COMPACT STORAGE is not supported by cqlserver")
                else:
                    k = self.ident("property name")
                    self.op("=")
                    props[k] = self.prop_value()
                if not self.accept_kw("and"):
                    break
        self.end()
        return CreateTable(ks=ks, table=name, if_not_exists=ine, columns=cols, pk=pk, ck=ck,
                           order=order, props=props)

    def prop_value(self):
        v = self.term()
        if isinstance(v, Bind):
            raise Invalid("Bind variables are not allowed in schema statements")
        return v

    def properties(self):
        props = {}
        while True:
            k = self.ident("property name")
            self.op("=")
            props[k] = self.prop_value()
            if not self.accept_kw("and"):
                break
        return props

    def drop(self):
        self.kw("drop")
        what = self.kw("keyspace", "schema", "table", "columnfamily", "index", "type", "function",
                       "aggregate", "materialized", "trigger", "role", "user")
        if what in ("keyspace", "schema"):
            ie = self.if_exists()
            name = self.ident("keyspace name")
            self.end()
            return Drop(what="keyspace", ks=name, table=None, if_exists=ie)
        if what in ("table", "columnfamily"):
            ie = self.if_exists()
            ks, name = self.qualified()
            self.end()
            return Drop(what="table", ks=ks, table=name, if_exists=ie)
        raise Invalid("DROP %s is not supported by cqlserver" % what.upper())

    def alter(self):
        self.kw("alter")
        what = self.kw("table", "columnfamily", "keyspace", "type", "materialized", "role", "user")
        if what not in ("table", "columnfamily"):
            raise Invalid("ALTER %s is not supported by cqlserver" % what.upper())
        ks, name = self.qualified()
        if not self.accept_kw("add"):
            raise Invalid("Only ALTER TABLE ... ADD is supported by cqlserver")
        cols = []
        paren = self.accept_op("(")
        while True:
            cname = self.ident("column name")
            tname, _ = self.cql_type()
            base = tname.split("<")[0].lower()
            if base in UNSUPPORTED_TYPES:
                raise Invalid("Type %s (column %s) is not supported by cqlserver" % (tname, cname))
            if base not in NATIVE:
                raise Invalid("Unknown type %s" % tname)
            cols.append((cname, base))
            if not (paren and self.accept_op(",")):
                break
        if paren:
            self.op(")")
        self.end()
        return AlterTable(ks=ks, table=name, add=cols)


def parse(text):
    p = Parser(text)
    s = p.statement()
    s.nbind = p.nbind
    return s
