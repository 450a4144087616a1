"""cqlengine - schema, in-memory storage and CQL statement execution.

Storage: Table.parts = {pk tuple of raw bytes: {ck tuple of raw bytes: row}};
row = [marker, cells] with marker = (write ts us, expiry s or 0) or None (rows
made by UPDATE only) and cells = {column name: (raw value or None for a
tombstone, write ts us, expiry s or 0)}. Values stay in their v4 wire form.
Last write wins by timestamp (ties: the later write). A row is live while its
marker or one of its cells is live.
"""
import bisect
import hashlib
import operator
import struct
import time
import uuid
from collections import deque

import cqlparse
from cqlparse import Bind, Lit, Null, Func, Coll
import cqltypes as T
from cqltypes import (CqlError, Invalid, ProtocolErr, UNSET, S_INT, S_SHORT, S_LONG,
                      enc_string, enc_bytes)

CONSISTENCY = ["ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM",
               "SERIAL", "LOCAL_SERIAL", "LOCAL_ONE"]
SYSTEM_KEYSPACES = ("system", "system_schema", "system_auth", "system_distributed", "system_traces")
RELEASE_VERSION = "3.11.16"
CQL_VERSION = "3.4.5"
MAX_TTL = 630720000
MAX_KEY = 65535

STRATEGIES = {
    "simplestrategy": "org.apache.cassandra.locator.SimpleStrategy",
    "networktopologystrategy": "org.apache.cassandra.locator.NetworkTopologyStrategy",
    "localstrategy": "org.apache.cassandra.locator.LocalStrategy",
    "everywherestrategy": "org.apache.cassandra.locator.EverywhereStrategy",
}
TABLE_PROPS = ("bloom_filter_fp_chance", "caching", "cdc", "comment", "compaction", "compression",
               "crc_check_chance", "dclocal_read_repair_chance", "default_time_to_live", "extensions",
               "gc_grace_seconds", "max_index_interval", "memtable_flush_period_in_ms",
               "min_index_interval", "read_repair_chance", "speculative_retry",
               "additional_write_policy", "read_repair")

RESULT_VOID = S_INT.pack(1)
_unpack_int = S_INT.unpack_from
_key0 = operator.itemgetter(0)

# source kinds of a value in a statement
SRC_BIND, SRC_CONST, SRC_FUNC = 0, 1, 2


def valid_name(n):
    return 0 < len(n) <= 48 and n.replace("_", "a").isalnum() and n.isascii()


# ---- schema -----------------------------------------------------------------

class Column:
    __slots__ = ("name", "type", "kind", "position", "order")

    def __init__(self, name, ctype, kind, position=-1, order="none"):
        self.name = name
        self.type = ctype
        self.kind = kind
        self.position = position
        self.order = order


class Table:
    def __init__(self, ks, name, columns, pk, ck, order=None, props=None, provider=None):
        order = order or {}
        self.ks = ks
        self.name = name
        self.columns = {}
        for cname, ctype in columns:
            self.columns[cname] = Column(cname, ctype, "regular")
        self.pk = []
        for i, c in enumerate(pk):
            col = self.columns[c]
            col.kind, col.position = "partition_key", i
            self.pk.append(col)
        self.ck = []
        for i, c in enumerate(ck):
            col = self.columns[c]
            col.kind, col.position, col.order = "clustering", i, order.get(c, "asc")
            self.ck.append(col)
        self.props = props or {}
        self.default_ttl = int(self.props.get("default_time_to_live", 0) or 0)
        self.id = uuid.uuid4()
        self.provider = provider
        self.provider_version = None
        self.parts = {}
        self._sorted = None
        self._layout()

    def _layout(self):
        self.regular = [c for c in self.columns.values() if c.kind == "regular"]
        self.star = self.pk + self.ck + sorted(self.regular, key=lambda c: c.name)
        # partition key components are never empty: their sort functions skip the
        # empty-value wrapper; clustering values may be empty (sorted first)
        self.pk_f = [T.sort_fn(c.type, allow_empty=False) for c in self.pk]
        self.ck_f = [(T.sort_fn(c.type), c.order == "desc") for c in self.ck]
        if len(self.pk_f) == 1:
            f = self.pk_f[0]
            self.pk_sk = (lambda pk: pk) if f is None else (lambda pk, f=f: (f(pk[0]),))
        if not self.ck_f:
            self.ck_sk = lambda ck: ()
        elif len(self.ck_f) == 1 and not self.ck_f[0][1]:
            f = self.ck_f[0][0]
            self.ck_sk = (lambda ck: ck) if f is None else (lambda ck, f=f: (f(ck[0]),))

    def add_column(self, name, ctype):
        self.columns[name] = Column(name, ctype, "regular")
        self._layout()

    # -- ordering
    def pk_sk(self, pk):
        return tuple(v if f is None else f(v) for f, v in zip(self.pk_f, pk))

    def ck_sk(self, ck):
        out = []
        for (f, desc), v in zip(self.ck_f, ck):
            k = v if f is None else f(v)
            out.append(T.Desc(k) if desc else k)
        return tuple(out)

    def sorted_all(self):
        """[(sort key, pk, ck)] of every stored row, in primary-key order."""
        s = self._sorted
        if s is None:
            s = []
            ck_sk = self.ck_sk
            for pk, part in self.parts.items():
                psk = self.pk_sk(pk)
                for ck in part:
                    s.append(((psk, ck_sk(ck)), pk, ck))
            s.sort(key=_key0)
            self._sorted = s
        return s

    def sorted_partition(self, pk):
        part = self.parts.get(pk)
        if not part:
            return []
        psk = self.pk_sk(pk)
        ck_sk = self.ck_sk
        s = [((psk, ck_sk(ck)), pk, ck) for ck in part]
        s.sort(key=_key0)
        return s

    # -- system tables: a provider(engine, conn, table) (re)loads the rows
    def load_rows(self, rows):
        self.parts = {}
        self._sorted = None
        for r in rows:
            pk = tuple(T.encode(c.type, r[c.name]) for c in self.pk)
            ck = tuple(T.encode(c.type, r[c.name]) for c in self.ck)
            cells = {}
            for c in self.regular:
                v = r.get(c.name)
                if v is not None:
                    cells[c.name] = (T.encode(c.type, v), 0, 0)
            self.parts.setdefault(pk, {})[ck] = [(0, 0), cells]

    def cql_create(self):
        return "%s.%s" % (self.ks, self.name)


class Keyspace:
    def __init__(self, name, replication, durable_writes=True, system=False):
        self.name = name
        self.replication = replication
        self.durable_writes = durable_writes
        self.system = system
        self.tables = {}


def row_live(row, now):
    m = row[0]
    if m is not None and (not m[1] or m[1] > now):
        return True
    for c in row[1].values():
        if c[0] is not None and (not c[2] or c[2] > now):
            return True
    return False


# ---- value sources ------------------------------------------------------------

def _func_source(f, ctype, colname):
    name = f.name
    if name == "now" and not f.args:
        if ctype.name not in ("timeuuid", "uuid"):
            raise Invalid("Type error: cannot assign result of function system.now (type timeuuid) to %s (type %s)"
                          % (colname, ctype.name))
        return (SRC_FUNC, lambda: uuid.uuid1().bytes)
    if name == "uuid" and not f.args:
        if ctype.name != "uuid":
            raise Invalid("Type error: cannot assign result of function system.uuid (type uuid) to %s (type %s)"
                          % (colname, ctype.name))
        return (SRC_FUNC, lambda: uuid.uuid4().bytes)
    if (name == "currenttimestamp" and not f.args) or \
            (name == "totimestamp" and len(f.args) == 1 and isinstance(f.args[0], Func) and f.args[0].name == "now"):
        if ctype.name != "timestamp":
            raise Invalid("Type error: cannot assign result of function %s (type timestamp) to %s (type %s)"
                          % (name, colname, ctype.name))
        return (SRC_FUNC, lambda: S_LONG.pack(int(time.time() * 1000)))
    raise Invalid("Unknown function %s called" % name)


class Binder:
    """Collects bind-variable specs while compiling a statement."""

    def __init__(self, node, ks, table):
        self.specs = [None] * node.nbind
        self.partial = getattr(node, "partial", False)
        self.ks = ks
        self.table = table

    def source(self, term, ctype, colname):
        if isinstance(term, Bind):
            self.specs[term.index] = (term.name or colname, ctype)
            return (SRC_BIND, term.index)
        if isinstance(term, Null):
            return (SRC_CONST, None)
        if isinstance(term, Lit):
            return (SRC_CONST, T.literal(ctype, term.kind, term.text, colname))
        if isinstance(term, Func):
            return _func_source(term, ctype, colname)
        if isinstance(term, Coll):
            raise Invalid("Invalid collection literal for %s of type %s" % (colname, ctype.name))
        raise Invalid("Invalid term for %s" % colname)

    def done(self):
        if self.partial:
            return self.specs
        for i, s in enumerate(self.specs):
            if s is None:
                raise Invalid("Invalid bind marker %d" % i)
        return self.specs


def resolve(src, vals):
    k, x = src
    if k == SRC_BIND:
        return vals[x]
    if k == SRC_CONST:
        return x
    return x()


def checks_for(specs):
    """Per bind variable (vcode, varg, vmsg) for the decode hot loop."""
    return [(t.vcode, t.varg, t.vmsg) for _, t in specs]


# ---- value decoding (hot path) ------------------------------------------------

def read_values(body, pos, checks, count):
    """Reads `count` [value]s from body at pos, validating each against checks.
    Returns (list of bytes/None/UNSET, new pos)."""
    if count != len(checks):
        raise Invalid("Invalid amount of bind variables: expected %d, got %d" % (len(checks), count))
    out = []
    append = out.append
    blen = len(body)
    for code, arg, msg in checks:
        if pos + 4 > blen:
            raise ProtocolErr("Not enough bytes to read a [value]")
        ln = _unpack_int(body, pos)[0]
        pos += 4
        if ln < 0:
            if ln == -1:
                append(None)
            elif ln == -2:
                append(UNSET)
            else:
                raise ProtocolErr("Invalid [value] length %d" % ln)
            continue
        end = pos + ln
        if end > blen:
            raise ProtocolErr("Not enough bytes to read a [value] of %d bytes" % ln)
        v = body[pos:end]
        pos = end
        if code:
            if code == 1:
                if ln != arg and ln:
                    raise Invalid(msg % ln)
            elif code == 2:
                if ln != arg:
                    raise Invalid(msg % ln)
            elif code == 3:
                try:
                    v.decode("utf-8")
                except UnicodeDecodeError:
                    raise Invalid("String didn't validate.") from None
            elif code == 4:
                if not v.isascii():
                    raise Invalid("Invalid byte for ascii: %d" % T._first_non_ascii(v))
            elif code == 5:
                if ln != 16 and ln:
                    raise Invalid(msg % ln)
                if ln and (v[6] & 0xF0) != 0x10:
                    raise Invalid("Invalid version for TimeUUID type.")
            elif code == 6:
                if ln and ln < 4:
                    raise Invalid(msg % ln)
            elif code == 7:
                if ln not in (0, 4, 16):
                    raise Invalid("Expected 4 or 16 byte inetaddress; got %d bytes" % ln)
        append(v)
    return out, pos


def read_named_values(body, pos, specs, count):
    """Values with names (QUERY flag 0x40): reordered to the markers' order."""
    raw = {}
    blen = len(body)
    for _ in range(count):
        if pos + 2 > blen:
            raise ProtocolErr("Not enough bytes to read a [string]")
        n = S_SHORT.unpack_from(body, pos)[0]
        name = body[pos + 2:pos + 2 + n].decode("utf-8", "replace").lower()
        pos += 2 + n
        if pos + 4 > blen:
            raise ProtocolErr("Not enough bytes to read a [value]")
        ln = _unpack_int(body, pos)[0]
        pos += 4
        if ln >= 0:
            if pos + ln > blen:
                raise ProtocolErr("Not enough bytes to read a [value]")
            raw[name] = body[pos:pos + ln]
            pos += ln
        else:
            raw[name] = None if ln == -1 else UNSET
    out = []
    for name, t in specs:
        if name.lower() not in raw:
            raise Invalid("No value for bind marker %s" % name)
        v = raw[name.lower()]
        if isinstance(v, bytes):
            T.validate(t, v)
        out.append(v)
    return out, pos


# ---- result encoding ----------------------------------------------------------

def col_specs(ks, table, cols):
    """Global table spec + col specs for [(name, type)]."""
    out = [enc_string(ks), enc_string(table)]
    for name, t in cols:
        out.append(enc_string(name))
        out.append(t.option())
    return b"".join(out)


def rows_result(meta_flags, ncols, paging_state, specs_bytes, rows):
    out = [S_INT.pack(2), S_INT.pack(meta_flags | (2 if paging_state is not None else 0)), S_INT.pack(ncols)]
    if paging_state is not None:
        out.append(enc_bytes(paging_state))
    if not meta_flags & 4:
        out.append(specs_bytes)
    out.append(S_INT.pack(len(rows)))
    pk = S_INT.pack
    for r in rows:
        for v in r:
            if v is None:
                out.append(b"\xff\xff\xff\xff")
            else:
                out.append(pk(len(v)))
                out.append(v)
    return b"".join(out)


def schema_change(change, target, ks, name=None):
    out = S_INT.pack(5) + enc_string(change) + enc_string(target) + enc_string(ks)
    if name is not None:
        out += enc_string(name)
    return out


# ---- statements ----------------------------------------------------------------

class Stmt:
    is_write = False
    is_select = False
    table = None
    specs = ()
    pk_indices = ()
    checks = ()
    result_cols = None

    def prepared_metadata(self):
        """<metadata><result_metadata> of a PREPARED result."""
        specs = self.specs
        t = self.table
        if t is not None:
            out = [S_INT.pack(1), S_INT.pack(len(specs)), S_INT.pack(len(self.pk_indices))]
            out += [S_SHORT.pack(i) for i in self.pk_indices]
            out.append(col_specs(t.ks, t.name, specs))
        else:
            out = [S_INT.pack(0), S_INT.pack(len(specs)), S_INT.pack(0)]
            for name, ty in specs:
                out.append(enc_string("") + enc_string("") + enc_string(name) + ty.option())
        if self.result_cols is not None:
            out.append(S_INT.pack(1) + S_INT.pack(len(self.result_cols)) + self.result_specs)
        else:
            out.append(S_INT.pack(4) + S_INT.pack(0))
        return b"".join(out)


def _resolve_table(engine, ks, name, conn_ks):
    ks = ks or conn_ks
    if not ks:
        raise Invalid("No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename")
    k = engine.keyspaces.get(ks)
    if k is None:
        raise Invalid("Keyspace '%s' does not exist" % ks)
    t = k.tables.get(name)
    if t is None:
        raise Invalid("unconfigured table %s" % name)
    return t


def _no_system_writes(t):
    if t.ks in SYSTEM_KEYSPACES:
        raise CqlError(T.UNAUTHORIZED, "%s keyspace is not user-modifiable." % t.ks)


def _key_of(srcs, cols, vals, is_pk):
    out = []
    for (k, x), col in zip(srcs, cols):
        v = vals[x] if k == SRC_BIND else (x if k == SRC_CONST else x())
        if v is None:
            raise Invalid("Invalid null value in condition for column %s" % col.name)
        if v is UNSET:
            raise Invalid("Invalid unset value for column %s" % col.name)
        out.append(v)
    if is_pk:
        if len(out) == 1:
            if not out[0]:
                raise Invalid("Key may not be empty")
            if len(out[0]) > MAX_KEY:
                raise Invalid("Key length of %d is longer than maximum of %d" % (len(out[0]), MAX_KEY))
        elif sum(len(v) + 3 for v in out) > MAX_KEY:
            raise Invalid("Key length is longer than maximum of %d" % MAX_KEY)
    return tuple(out)


MUT_INSERT, MUT_UPDATE, MUT_DELETE = 0, 1, 2


class _Modification(Stmt):
    """INSERT/UPDATE/DELETE. mutation(vals, now) validates and returns
    (kind, table, pk, ck, timestamp or None, expiry, data) without touching
    storage; apply_mutation(mut, default_ts) stores it. Batches build every
    mutation first, so a bad statement leaves the batch unapplied."""
    is_write = True
    fastrow = None

    def _using(self, b, node):
        self.ttl_src = b.source(node.ttl, T.INT, "[ttl]") if getattr(node, "ttl", None) is not None else None
        self.ts_src = b.source(node.ts, T.BIGINT, "[timestamp]") if node.ts is not None else None

    def _ttl(self, vals):
        if self.ttl_src is None:
            return self.table.default_ttl
        v = resolve(self.ttl_src, vals)
        if v is None:
            raise Invalid("Invalid null value of TTL")
        if v is UNSET or not v:
            return self.table.default_ttl
        ttl = S_INT.unpack(v)[0]
        if ttl < 0:
            raise Invalid("A TTL must be greater or equal to 0, but was %d" % ttl)
        if ttl > MAX_TTL:
            raise Invalid("ttl is too large. requested (%d) maximum (%d)" % (ttl, MAX_TTL))
        return ttl

    def _ts(self, vals):
        if self.ts_src is None:
            return None
        v = resolve(self.ts_src, vals)
        if v is None:
            raise Invalid("Invalid null value of timestamp")
        if v is UNSET or not v:
            return None
        return S_LONG.unpack(v)[0]

    def _pk_indices(self, pk_srcs):
        if all(k == SRC_BIND for k, _ in pk_srcs):
            return tuple(x for _, x in pk_srcs)
        return ()

    def _where_keys(self, b, node, need_full_ck):
        t = self.table
        rel = {}
        for col, term, _pos in node.where:
            c = t.columns.get(col)
            if c is None:
                raise Invalid("Undefined column name %s" % col)
            if c.kind == "regular":
                raise Invalid("Non PRIMARY KEY columns found in where clause: %s " % col)
            if col in rel:
                raise Invalid("%s cannot be restricted by more than one relation if it includes an Equal" % col)
            rel[col] = b.source(term, c.type, col)
        missing = [c.name for c in t.pk if c.name not in rel]
        if missing:
            raise Invalid("Some partition key parts are missing: %s" % ", ".join(missing))
        self.pk_src = [rel[c.name] for c in t.pk]
        ck_src = []
        for i, c in enumerate(t.ck):
            if c.name in rel:
                if len(ck_src) < i:
                    raise Invalid('PRIMARY KEY column "%s" cannot be restricted as preceding column "%s" is not restricted'
                                  % (c.name, t.ck[i - 1].name))
                ck_src.append(rel[c.name])
        if need_full_ck and len(ck_src) < len(t.ck):
            raise Invalid("Some clustering keys are missing: %s" %
                          ", ".join(c.name for c in t.ck[len(ck_src):]))
        self.ck_src = ck_src

    def _data(self, vals):
        data = []
        for name, src in self.reg_src:
            v = resolve(src, vals)
            if v is not UNSET:
                data.append((name, v))
        return data

    def execute(self, engine, conn, vals, qp):
        apply_mutation(self.mutation(vals, int(time.time())), qp.ts if qp.ts is not None else engine.next_ts())
        return RESULT_VOID


# -- generated per-statement decoders ---------------------------------------------

_CHECK_CODE = {
    T.V_FIXED_OR_EMPTY: "        if ln != {arg} and ln:\n            raise Invalid({msg!r} % ln)\n",
    T.V_FIXED: "        if ln != {arg}:\n            raise Invalid({msg!r} % ln)\n",
    T.V_TEXT: "        if not v{i}.isascii():\n            _utf8(v{i})\n",
    T.V_ASCII: "        if not v{i}.isascii():\n            raise Invalid('Invalid byte for ascii: %d' % _nonascii(v{i}))\n",
    T.V_TIMEUUID: "        if ln != 16 and ln:\n            raise Invalid({msg!r} % ln)\n"
                  "        if ln and (v{i}[6] & 0xF0) != 0x10:\n"
                  "            raise Invalid('Invalid version for TimeUUID type.')\n",
    T.V_DECIMAL: "        if ln and ln < 4:\n            raise Invalid({msg!r} % ln)\n",
    T.V_INET: "        if ln not in (0, 4, 16):\n"
              "            raise Invalid('Expected 4 or 16 byte inetaddress; got %d bytes' % ln)\n",
}


def _utf8(v):
    try:
        v.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("String didn't validate.") from None


def _short_value():
    return ProtocolErr("Not enough bytes to read a [value]")


def gen_fastrow(stmt):
    """Python source of fastrow(body, pos, blen, now) -> (pos, mutation) for an
    INSERT whose keys and values are all bind markers (TTL and TIMESTAMP may be
    literals or markers): reads and validates the [value]s straight from the
    frame body, then builds the mutation. Anything unusual (null/unset/empty key,
    unset value, null/unset/out-of-range TTL or timestamp) falls back to
    stmt.mutation, which handles it or raises the proper error. None when a
    literal TTL/TIMESTAMP is itself invalid (the general path reports it)."""
    n = len(stmt.specs)
    L = ["def fastrow(body, pos, blen, now):"]
    for i, (name, t) in enumerate(stmt.specs):
        L.append("    if pos + 4 > blen:\n        raise _short_value()")
        L.append("    ln = _ui(body, pos)[0]\n    pos += 4")
        L.append("    if ln >= 0:\n        end = pos + ln\n        if end > blen:\n            raise _short_value()")
        L.append("        v%d = body[pos:end]\n        pos = end" % i)
        code = _CHECK_CODE.get(t.vcode)
        if code:
            L.append(code.format(arg=t.varg, msg=t.vmsg, i=i).rstrip("\n"))
        L.append("    elif ln == -1:\n        v%d = None\n    elif ln == -2:\n        v%d = UNSET" % (i, i))
        L.append("    else:\n        raise ProtocolErr('Invalid [value] length %d' % ln)")
    allv = "[" + ", ".join("v%d" % i for i in range(n)) + "]"
    pk = [x for _, x in stmt.pk_src]
    ck = [x for _, x in stmt.ck_src]
    regs = [(name, src[1]) for name, src in stmt.reg_src]
    conds = ["v%d is None or v%d is UNSET" % (i, i) for i in pk + ck] + ["not v%d" % i for i in pk]
    if len(pk) == 1:
        conds.append("len(v%d) > %d" % (pk[0], MAX_KEY))
    else:
        conds.append(" + ".join("len(v%d)" % i for i in pk) + " > %d" % (MAX_KEY - 3 * len(pk)))
    if regs:
        conds.append(" or ".join("v%d is UNSET" % i for _, i in regs))
    # TTL: default, literal, or marker (4 bytes, validated as int above)
    ttl_check = None
    if stmt.ttl_src is None:
        ttl_expr = "table.default_ttl"
    elif stmt.ttl_src[0] == SRC_CONST:
        v = stmt.ttl_src[1]
        if v is None:
            return None
        ttl = S_INT.unpack(v)[0] if v else None
        if ttl is not None and not 0 <= ttl <= MAX_TTL:
            return None
        ttl_expr = "table.default_ttl" if ttl is None else repr(ttl)
    elif stmt.ttl_src[0] == SRC_BIND:
        j = stmt.ttl_src[1]
        conds.append("v%d is None or v%d is UNSET or not v%d" % (j, j, j))
        ttl_expr = "_ui(v%d, 0)[0]" % j
        ttl_check = "    if ttl < 0 or ttl > %d:\n        return pos, stmt.mutation(%s, now)" % (MAX_TTL, allv)
    else:
        return None
    # TIMESTAMP: none (the request's), literal, or marker (8 bytes)
    if stmt.ts_src is None:
        ts_expr = "None"
    elif stmt.ts_src[0] == SRC_CONST:
        v = stmt.ts_src[1]
        if v is None:
            return None
        ts_expr = repr(S_LONG.unpack(v)[0]) if v else "None"
    elif stmt.ts_src[0] == SRC_BIND:
        j = stmt.ts_src[1]
        conds.append("v%d is None or v%d is UNSET or not v%d" % (j, j, j))
        ts_expr = "_ul(v%d, 0)[0]" % j
    else:
        return None
    L.append("    if %s:\n        return pos, stmt.mutation(%s, now)" % (" or ".join("(%s)" % c for c in conds), allv))
    L.append("    ttl = %s" % ttl_expr)
    if ttl_check:
        L.append(ttl_check)
    L.append("    return pos, (0, table, (%s), (%s), %s, now + ttl if ttl else 0, [%s])" % (
        "".join("v%d, " % i for i in pk), "".join("v%d, " % i for i in ck), ts_expr,
        ", ".join("(%r, v%d)" % (name, i) for name, i in regs)))
    return "\n".join(L) + "\n"


def compile_fastrow(stmt):
    src = gen_fastrow(stmt)
    if src is None:
        return None
    ns = {"_ui": _unpack_int, "_ul": S_LONG.unpack_from, "_short_value": _short_value, "Invalid": Invalid,
          "ProtocolErr": ProtocolErr, "UNSET": UNSET, "_utf8": _utf8, "_nonascii": T._first_non_ascii,
          "stmt": stmt, "table": stmt.table}
    exec(compile(src, "<fastrow %s.%s>" % (stmt.table.ks, stmt.table.name), "exec"), ns)
    return ns["fastrow"]


class InsertStmt(_Modification):
    def __init__(self, engine, node, conn_ks):
        t = self.table = _resolve_table(engine, node.ks, node.table, conn_ks)
        _no_system_writes(t)
        if len(node.columns) != len(node.values):
            raise Invalid("Unmatched column names/values")
        b = Binder(node, t.ks, t.name)
        srcs = {}
        for name, term in zip(node.columns, node.values):
            c = t.columns.get(name)
            if c is None:
                raise Invalid("Undefined column name %s" % name)
            if name in srcs:
                raise Invalid("Multiple definitions found for column %s" % name)
            srcs[name] = b.source(term, c.type, name)
        missing = [c.name for c in t.pk if c.name not in srcs]
        if missing:
            raise Invalid("Some partition key parts are missing: %s" % ", ".join(missing))
        missing = [c.name for c in t.ck if c.name not in srcs]
        if missing:
            raise Invalid("Some clustering keys are missing: %s" % ", ".join(missing))
        self._using(b, node)
        self.pk_src = [srcs[c.name] for c in t.pk]
        self.ck_src = [srcs[c.name] for c in t.ck]
        self.reg_src = [(c.name, srcs[c.name]) for c in t.regular if c.name in srcs]
        self.if_not_exists = node.if_not_exists
        self.specs = b.done()
        self.checks = checks_for(self.specs)
        self.pk_indices = self._pk_indices(self.pk_src)
        if (not getattr(node, "partial", False) and not self.if_not_exists and
                all(k == SRC_BIND for k, _ in self.pk_src + self.ck_src) and
                all(s[0] == SRC_BIND for _, s in self.reg_src)):
            self.fastrow = compile_fastrow(self)

    def mutation(self, vals, now):
        t = self.table
        ttl = self._ttl(vals)
        return (MUT_INSERT, t, _key_of(self.pk_src, t.pk, vals, True), _key_of(self.ck_src, t.ck, vals, False),
                self._ts(vals), now + ttl if ttl else 0, self._data(vals))

    def execute(self, engine, conn, vals, qp):
        now = int(time.time())
        mut = self.mutation(vals, now)
        ts = qp.ts if qp.ts is not None else engine.next_ts()
        if self.if_not_exists:
            t, pk, ck = mut[1], mut[2], mut[3]
            row = t.parts.get(pk, {}).get(ck)
            cols = [("[applied]", T.BOOLEAN)]
            if row is not None and row_live(row, now):
                cols += [(c.name, c.type) for c in t.star]
                vals_out = [b"\x00"] + row_values(t, pk, ck, row, now)
                return rows_result(1, len(cols), None, col_specs(t.ks, t.name, cols), [vals_out])
            apply_mutation(mut, ts)
            return rows_result(1, 1, None, col_specs(t.ks, t.name, cols), [[b"\x01"]])
        apply_mutation(mut, ts)
        return RESULT_VOID


def row_values(t, pk, ck, row, now):
    out = list(pk) + list(ck)
    cells = row[1]
    for c in t.star[len(pk) + len(ck):]:
        cell = cells.get(c.name)
        out.append(cell[0] if cell is not None and (not cell[2] or cell[2] > now) else None)
    return out


def apply_mutation(mut, default_ts):
    kind, t, pk, ck, ts, exp, data = mut
    if ts is None:
        ts = default_ts
    if kind == MUT_DELETE:
        return apply_delete(t, pk, ck, data, ts)
    parts = t.parts
    part = parts.get(pk)
    if part is None:
        part = parts[pk] = {}
    row = part.get(ck)
    if row is None:
        part[ck] = [(ts, exp) if kind == MUT_INSERT else None, {name: (v, ts, exp) for name, v in data}]
        t._sorted = None
        return
    if kind == MUT_INSERT:
        m = row[0]
        if m is None or ts >= m[0]:
            row[0] = (ts, exp)
    rc = row[1]
    for name, v in data:
        o = rc.get(name)
        if o is None or ts >= o[1]:
            rc[name] = (v, ts, exp)


def apply_delete(t, pk, ck_prefix, columns, ts):
    part = t.parts.get(pk)
    if not part:
        return
    n = len(ck_prefix)
    if columns:
        row = part.get(ck_prefix)
        if row is not None:
            for c in columns:
                o = row[1].get(c)
                if o is None or o[1] <= ts:
                    row[1][c] = (None, ts, 0)
        return
    for ck in [ck for ck in part if ck[:n] == ck_prefix]:
        row = part[ck]
        if row[0] is not None and row[0][0] <= ts:
            row[0] = None
        cells = row[1]
        for name in [name for name, c in cells.items() if c[1] <= ts]:
            del cells[name]
        if row[0] is None and not any(c[0] is not None for c in cells.values()):
            del part[ck]
            t._sorted = None
    if not part:
        del t.parts[pk]
        t._sorted = None


class UpdateStmt(_Modification):
    def __init__(self, engine, node, conn_ks):
        t = self.table = _resolve_table(engine, node.ks, node.table, conn_ks)
        _no_system_writes(t)
        b = Binder(node, t.ks, t.name)
        self._using(b, node)
        self.reg_src = []
        seen = set()
        for name, term in node.assignments:
            c = t.columns.get(name)
            if c is None:
                raise Invalid("Undefined column name %s" % name)
            if c.kind != "regular":
                raise Invalid("PRIMARY KEY part %s found in SET part" % name)
            if name in seen:
                raise Invalid("Multiple definitions found for column %s" % name)
            seen.add(name)
            self.reg_src.append((name, b.source(term, c.type, name)))
        self._where_keys(b, node, True)
        self.specs = b.done()
        self.checks = checks_for(self.specs)
        self.pk_indices = self._pk_indices(self.pk_src)

    def mutation(self, vals, now):
        t = self.table
        ttl = self._ttl(vals)
        return (MUT_UPDATE, t, _key_of(self.pk_src, t.pk, vals, True), _key_of(self.ck_src, t.ck, vals, False),
                self._ts(vals), now + ttl if ttl else 0, self._data(vals))


class DeleteStmt(_Modification):
    def __init__(self, engine, node, conn_ks):
        t = self.table = _resolve_table(engine, node.ks, node.table, conn_ks)
        _no_system_writes(t)
        b = Binder(node, t.ks, t.name)
        self._using(b, node)
        self.columns = []
        for name in node.columns:
            c = t.columns.get(name)
            if c is None:
                raise Invalid("Undefined column name %s" % name)
            if c.kind != "regular":
                raise Invalid("Invalid identifier %s for deletion (should not be a PRIMARY KEY part)" % name)
            self.columns.append(name)
        self._where_keys(b, node, False)
        if self.columns and len(self.ck_src) < len(t.ck):
            raise Invalid("Range deletions are not supported for specific columns")
        self.specs = b.done()
        self.checks = checks_for(self.specs)
        self.pk_indices = self._pk_indices(self.pk_src)

    def mutation(self, vals, now):
        t = self.table
        return (MUT_DELETE, t, _key_of(self.pk_src, t.pk, vals, True),
                _key_of(self.ck_src, t.ck[:len(self.ck_src)], vals, False), self._ts(vals), 0, self.columns)


class QueryParams:
    __slots__ = ("consistency", "page_size", "paging_state", "serial", "ts", "skip_metadata")

    def __init__(self):
        self.consistency = 1
        self.page_size = -1
        self.paging_state = None
        self.serial = None
        self.ts = None
        self.skip_metadata = False


SEL_PK, SEL_CK, SEL_REG, SEL_TTL, SEL_WT = range(5)


class SelectStmt(Stmt):
    is_select = True

    def __init__(self, engine, node, conn_ks):
        t = self.table = _resolve_table(engine, node.ks, node.table, conn_ks)
        b = Binder(node, t.ks, t.name)
        self.count = False
        sel = []
        cols = []
        if node.selectors is None:
            for c in t.star:
                sel.append(self._sel_col(c))
                cols.append((c.name, c.type))
        else:
            for what, arg, alias in node.selectors:
                if what == "count":
                    if len(node.selectors) != 1:
                        raise Invalid("cqlserver supports COUNT only as the single selector")
                    if arg is not None and arg not in t.columns:
                        raise Invalid("Undefined column name %s" % arg)
                    self.count = arg or True
                    cols.append((alias or "count", T.BIGINT))
                    continue
                c = t.columns.get(arg)
                if c is None:
                    raise Invalid("Undefined column name %s" % arg)
                if what == "col":
                    sel.append(self._sel_col(c))
                    cols.append((alias or c.name, c.type))
                else:
                    if c.kind != "regular":
                        raise Invalid("Cannot use selection function %s on PRIMARY KEY part %s" % (what, c.name))
                    if what == "ttl":
                        sel.append((SEL_TTL, c.name))
                        cols.append((alias or "ttl(%s)" % c.name, T.INT))
                    else:
                        sel.append((SEL_WT, c.name))
                        cols.append((alias or "writetime(%s)" % c.name, T.BIGINT))
        self.sel = sel
        self.result_cols = cols
        self.result_specs = col_specs(t.ks, t.name, cols)
        # restrictions
        rel = {}
        for col, term, _pos in node.where:
            c = t.columns.get(col)
            if c is None:
                raise Invalid("Undefined column name %s" % col)
            if col in rel:
                raise Invalid("%s cannot be restricted by more than one relation if it includes an Equal" % col)
            rel[col] = (c, b.source(term, c.type, col))
        filters = []
        self.pk_src = None
        self.ck_pre = []
        if t.pk and all(c.name in rel for c in t.pk):
            self.pk_src = [rel.pop(c.name)[1] for c in t.pk]
            for c in t.ck:
                if c.name not in rel:
                    break
                self.ck_pre.append(rel.pop(c.name)[1])
        for name, (c, src) in rel.items():
            if c.kind == "partition_key":
                filters.append((SEL_PK, c.position, src, c))
            elif c.kind == "clustering":
                filters.append((SEL_CK, c.position, src, c))
            else:
                filters.append((SEL_REG, c.name, src, c))
        if filters and not node.allow_filtering:
            raise Invalid("Cannot execute this query as it might involve data filtering and thus may have "
                          "unpredictable performance. If you want to execute this query despite the "
                          "performance unpredictability, use ALLOW FILTERING")
        self.filters = filters
        self.limit_src = b.source(node.limit, T.INT, "[limit]") if node.limit is not None else None
        self.specs = b.done()
        self.checks = checks_for(self.specs)
        if self.pk_src and all(k == SRC_BIND for k, _ in self.pk_src):
            self.pk_indices = tuple(x for _, x in self.pk_src)

    @staticmethod
    def _sel_col(c):
        if c.kind == "partition_key":
            return (SEL_PK, c.position)
        if c.kind == "clustering":
            return (SEL_CK, c.position)
        return (SEL_REG, c.name)

    def _paging_state(self, pk, ck, emitted):
        out = [b"\x01", S_INT.pack(emitted), S_SHORT.pack(len(pk))]
        out += [enc_bytes(v) for v in pk]
        out.append(S_SHORT.pack(len(ck)))
        out += [enc_bytes(v) for v in ck]
        return b"".join(out)

    def _decode_paging_state(self, ps):
        try:
            if ps[0] != 1:
                raise ValueError
            emitted = S_INT.unpack_from(ps, 1)[0]
            pos = 5
            keys = []
            for _ in range(2):
                n = S_SHORT.unpack_from(ps, pos)[0]
                pos += 2
                comps = []
                for _ in range(n):
                    ln = S_INT.unpack_from(ps, pos)[0]
                    if ln < 0 or pos + 4 + ln > len(ps):
                        raise ValueError
                    comps.append(bytes(ps[pos + 4:pos + 4 + ln]))
                    pos += 4 + ln
                keys.append(tuple(comps))
            pk, ck = keys
            if len(pk) != len(self.table.pk) or len(ck) != len(self.table.ck):
                raise ValueError
            return (self.table.pk_sk(pk), self.table.ck_sk(ck)), emitted
        except (ValueError, IndexError, struct.error):
            raise ProtocolErr("Invalid value for the paging state") from None

    def execute(self, engine, conn, vals, qp):
        t = self.table
        if t.provider is not None:
            t.provider(engine, conn, t)
        now = int(time.time())
        limit = None
        if self.limit_src is not None:
            v = resolve(self.limit_src, vals)
            if v is None:
                raise Invalid("Invalid null value of limit")
            if v is not UNSET and v:
                limit = S_INT.unpack(v)[0]
                if limit <= 0:
                    raise Invalid("LIMIT must be strictly positive")
        if self.pk_src is not None:
            pk = _key_of(self.pk_src, t.pk, vals, True)
            ck_pre = _key_of(self.ck_pre, t.ck, vals, False) if self.ck_pre else ()
            if self.count:      # counting needs no order
                cands = [(None, pk, ck) for ck in t.parts.get(pk, ())]
            else:
                cands = t.sorted_partition(pk)
        else:
            ck_pre = ()
            if self.count:
                cands = [(None, pk, ck) for pk, part in t.parts.items() for ck in part]
            else:
                cands = t.sorted_all()
        npre = len(ck_pre)
        filters = []
        for kind, x, src, c in self.filters:
            v = resolve(src, vals)
            if v is None or v is UNSET:
                raise Invalid("Invalid %s value in condition for column %s" % ("null" if v is None else "unset", c.name))
            filters.append((kind, x, v))
        parts = t.parts

        def matches(pk, ck, row):
            if npre and ck[:npre] != ck_pre:
                return False
            for kind, x, v in filters:
                if kind == SEL_PK:
                    if pk[x] != v:
                        return False
                elif kind == SEL_CK:
                    if ck[x] != v:
                        return False
                else:
                    cell = row[1].get(x)
                    if cell is None or cell[0] != v or (cell[2] and cell[2] <= now):
                        return False
            return row_live(row, now)

        if self.count:
            n = 0
            col = self.count if self.count is not True else None
            for _sk, pk, ck in cands:
                row = parts[pk][ck]
                if matches(pk, ck, row):
                    if col is not None:
                        cell = row[1].get(col)
                        if col in t.columns and t.columns[col].kind == "regular" and \
                                (cell is None or cell[0] is None or (cell[2] and cell[2] <= now)):
                            continue
                    n += 1
                    if limit is not None and n >= limit:
                        break
            flags = 5 if qp.skip_metadata else 1
            return rows_result(flags, 1, None, self.result_specs, [[S_LONG.pack(n)]])

        start = 0
        emitted = 0
        if qp.paging_state is not None:
            last_sk, emitted = self._decode_paging_state(qp.paging_state)
            start = bisect.bisect_right(cands, last_sk, key=_key0)
        want = qp.page_size if qp.page_size and qp.page_size > 0 else None
        if limit is not None:
            remaining = limit - emitted
            want = remaining if want is None else min(want, remaining)
        rows = []
        sel = self.sel
        i = start
        n = len(cands)
        last = None
        more = False
        while i < n:
            _sk, pk, ck = cands[i]
            i += 1
            row = parts[pk][ck]
            if not matches(pk, ck, row):
                continue
            if want is not None and len(rows) >= want:
                more = True
                break
            cells = row[1]
            out = []
            for kind, x in sel:
                if kind == SEL_REG:
                    c = cells.get(x)
                    out.append(c[0] if c is not None and (not c[2] or c[2] > now) else None)
                elif kind == SEL_PK:
                    out.append(pk[x])
                elif kind == SEL_CK:
                    out.append(ck[x])
                else:
                    c = cells.get(x)
                    if c is None or c[0] is None or (c[2] and c[2] <= now):
                        out.append(None)
                    elif kind == SEL_TTL:
                        out.append(S_INT.pack(c[2] - now) if c[2] else None)
                    else:
                        out.append(S_LONG.pack(c[1]))
            rows.append(out)
            last = (pk, ck)
        if limit is not None and emitted + len(rows) >= limit:
            more = False
        ps = self._paging_state(last[0], last[1], emitted + len(rows)) if more and last else None
        flags = 5 if qp.skip_metadata else 1
        return rows_result(flags, len(self.result_cols), ps, self.result_specs, rows)


class BatchStmt(Stmt):
    """A text BEGIN BATCH ... APPLY BATCH (QUERY opcode). Bind markers are
    numbered across the whole batch, so every statement reads the full list."""
    is_write = True

    def __init__(self, engine, node, conn_ks):
        if node.type == "counter":
            raise Invalid("Cannot include non-counter statement in a counter batch")
        self.type = node.type
        self.stmts = []
        specs = [None] * node.nbind
        for s in node.statements:
            if getattr(s, "if_not_exists", False):
                raise Invalid("Conditional statements in batches are not supported by cqlserver")
            s.nbind = node.nbind
            s.partial = True
            st = engine.compile(s, conn_ks)
            for i, sp in enumerate(st.specs):
                if sp is not None:
                    specs[i] = sp
            self.stmts.append(st)
        self.ts = None
        if node.ts is not None:
            if not isinstance(node.ts, Lit) or node.ts.kind != "int":
                raise Invalid("cqlserver supports only a literal BATCH USING TIMESTAMP")
            self.ts = int(node.ts.text)
        if any(sp is None for sp in specs):
            raise Invalid("Invalid bind markers in BATCH")
        self.specs = specs
        self.checks = checks_for(specs)

    def execute(self, engine, conn, vals, qp):
        ts = self.ts if self.ts is not None else (qp.ts if qp.ts is not None else engine.next_ts())
        now = int(time.time())
        muts = [st.mutation(vals, now) for st in self.stmts]
        for m in muts:
            apply_mutation(m, ts)
        return RESULT_VOID


class DdlStmt(Stmt):
    """Schema statements, USE, TRUNCATE: executed by the engine."""

    def __init__(self, node):
        self.node = node
        self.specs = []
        if node.nbind:
            raise Invalid("Bind variables are not allowed in %s statements" % node.kind.replace("_", " ").upper())

    def execute(self, engine, conn, vals, qp):
        return engine.ddl(self.node, conn)


# ---- system tables ------------------------------------------------------------

def _sys_local(engine, conn, t):
    ip = getattr(conn, "local_ip", None) or "127.0.0.1"
    t.load_rows([{
        "key": "local", "bootstrapped": "COMPLETED", "broadcast_address": ip, "cluster_name": "cqlserver",
        "cql_version": CQL_VERSION, "data_center": "datacenter1", "gossip_generation": engine.started,
        "host_id": engine.host_id, "listen_address": ip, "native_protocol_version": "4",
        "partitioner": "org.apache.cassandra.dht.Murmur3Partitioner", "rack": "rack1",
        "release_version": RELEASE_VERSION, "rpc_address": ip, "schema_version": engine.schema_version,
        "thrift_version": "20.1.0", "tokens": {"0"},
    }])


def _sys_empty(engine, conn, t):
    pass


def _schema_provider(fn):
    def provider(engine, conn, t):
        if t.provider_version == engine.schema_version:
            return
        t.load_rows(fn(engine))
        t.provider_version = engine.schema_version
    return provider


def _rows_keyspaces(engine):
    return [{"keyspace_name": k.name, "durable_writes": k.durable_writes, "replication": k.replication}
            for k in engine.keyspaces.values()]


def _rows_tables(engine):
    out = []
    for k in engine.keyspaces.values():
        for t in k.tables.values():
            out.append({
                "keyspace_name": k.name, "table_name": t.name, "bloom_filter_fp_chance": 0.01,
                "caching": {"keys": "ALL", "rows_per_partition": "NONE"},
                "comment": t.props.get("comment", "") or "",
                "compaction": {"class": "org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy",
                               "max_threshold": "32", "min_threshold": "4"},
                "compression": {"chunk_length_in_kb": "64", "class": "org.apache.cassandra.io.compress.LZ4Compressor"},
                "crc_check_chance": 1.0, "dclocal_read_repair_chance": 0.1,
                "default_time_to_live": t.default_ttl, "extensions": {}, "flags": {"compound"},
                "gc_grace_seconds": 864000, "id": t.id, "max_index_interval": 2048,
                "memtable_flush_period_in_ms": 0, "min_index_interval": 128, "read_repair_chance": 0.0,
                "speculative_retry": "99PERCENTILE",
            })
    return out


def _rows_columns(engine):
    out = []
    for k in engine.keyspaces.values():
        for t in k.tables.values():
            for c in t.columns.values():
                out.append({"keyspace_name": k.name, "table_name": t.name, "column_name": c.name,
                            "clustering_order": c.order, "column_name_bytes": c.name.encode(),
                            "kind": c.kind, "position": c.position, "type": c.type.name})
    return out


TEXT_LIST = T.list_of(T.TEXT)
TEXT_MAP = T.map_of(T.TEXT, T.TEXT)

SYSTEM_TABLES = {
    "system": [
        ("local", [("key", T.TEXT), ("bootstrapped", T.TEXT), ("broadcast_address", T.INET),
                   ("cluster_name", T.TEXT), ("cql_version", T.TEXT), ("data_center", T.TEXT),
                   ("gossip_generation", T.INT), ("host_id", T.UUID), ("listen_address", T.INET),
                   ("native_protocol_version", T.TEXT), ("partitioner", T.TEXT), ("rack", T.TEXT),
                   ("release_version", T.TEXT), ("rpc_address", T.INET), ("schema_version", T.UUID),
                   ("thrift_version", T.TEXT), ("tokens", T.set_of(T.TEXT))], ["key"], [], _sys_local),
        ("peers", [("peer", T.INET), ("data_center", T.TEXT), ("host_id", T.UUID), ("preferred_ip", T.INET),
                   ("rack", T.TEXT), ("release_version", T.TEXT), ("rpc_address", T.INET),
                   ("schema_version", T.UUID), ("tokens", T.set_of(T.TEXT))], ["peer"], [], _sys_empty),
    ],
    "system_schema": [
        ("keyspaces", [("keyspace_name", T.TEXT), ("durable_writes", T.BOOLEAN), ("replication", TEXT_MAP)],
         ["keyspace_name"], [], _schema_provider(_rows_keyspaces)),
        ("tables", [("keyspace_name", T.TEXT), ("table_name", T.TEXT), ("bloom_filter_fp_chance", T.DOUBLE),
                    ("caching", TEXT_MAP), ("comment", T.TEXT), ("compaction", TEXT_MAP),
                    ("compression", TEXT_MAP), ("crc_check_chance", T.DOUBLE),
                    ("dclocal_read_repair_chance", T.DOUBLE), ("default_time_to_live", T.INT),
                    ("extensions", T.map_of(T.TEXT, T.BLOB)), ("flags", T.set_of(T.TEXT)),
                    ("gc_grace_seconds", T.INT), ("id", T.UUID), ("max_index_interval", T.INT),
                    ("memtable_flush_period_in_ms", T.INT), ("min_index_interval", T.INT),
                    ("read_repair_chance", T.DOUBLE), ("speculative_retry", T.TEXT)],
         ["keyspace_name"], ["table_name"], _schema_provider(_rows_tables)),
        ("columns", [("keyspace_name", T.TEXT), ("table_name", T.TEXT), ("column_name", T.TEXT),
                     ("clustering_order", T.TEXT), ("column_name_bytes", T.BLOB), ("kind", T.TEXT),
                     ("position", T.INT), ("type", T.TEXT)],
         ["keyspace_name"], ["table_name", "column_name"], _schema_provider(_rows_columns)),
        ("dropped_columns", [("keyspace_name", T.TEXT), ("table_name", T.TEXT), ("column_name", T.TEXT),
                             ("dropped_time", T.TIMESTAMP), ("type", T.TEXT)],
         ["keyspace_name"], ["table_name", "column_name"], _sys_empty),
        ("types", [("keyspace_name", T.TEXT), ("type_name", T.TEXT), ("field_names", TEXT_LIST),
                   ("field_types", TEXT_LIST)], ["keyspace_name"], ["type_name"], _sys_empty),
        ("functions", [("keyspace_name", T.TEXT), ("function_name", T.TEXT), ("argument_types", TEXT_LIST),
                       ("argument_names", TEXT_LIST), ("body", T.TEXT), ("called_on_null_input", T.BOOLEAN),
                       ("language", T.TEXT), ("return_type", T.TEXT)],
         ["keyspace_name"], ["function_name", "argument_types"], _sys_empty),
        ("aggregates", [("keyspace_name", T.TEXT), ("aggregate_name", T.TEXT), ("argument_types", TEXT_LIST),
                        ("final_func", T.TEXT), ("initcond", T.TEXT), ("return_type", T.TEXT),
                        ("state_func", T.TEXT), ("state_type", T.TEXT)],
         ["keyspace_name"], ["aggregate_name", "argument_types"], _sys_empty),
        ("triggers", [("keyspace_name", T.TEXT), ("table_name", T.TEXT), ("trigger_name", T.TEXT),
                      ("options", TEXT_MAP)], ["keyspace_name"], ["table_name", "trigger_name"], _sys_empty),
        ("indexes", [("keyspace_name", T.TEXT), ("table_name", T.TEXT), ("index_name", T.TEXT),
                     ("kind", T.TEXT), ("options", TEXT_MAP)],
         ["keyspace_name"], ["table_name", "index_name"], _sys_empty),
        ("views", [("keyspace_name", T.TEXT), ("view_name", T.TEXT), ("base_table_id", T.UUID),
                   ("base_table_name", T.TEXT), ("include_all_columns", T.BOOLEAN), ("where_clause", T.TEXT)],
         ["keyspace_name"], ["view_name"], _sys_empty),
    ],
}


# ---- engine -----------------------------------------------------------------------

FAIL_KINDS = ("unavailable", "write_timeout", "overloaded", "server_error", "read_timeout", "truncate_error")


def _lit_str(term, what):
    if isinstance(term, Lit):
        return term.text
    raise CqlError(T.SYNTAX_ERROR, "Invalid value for property '%s'" % what)


class Engine:
    def __init__(self, blackhole=False):
        self.blackhole = blackhole
        self.host_id = uuid.uuid4()
        self.started = int(time.time())
        self._last_ts = 0
        self.ast_cache = {}
        self.stmt_cache = {}
        self.reset()

    def reset(self):
        self.keyspaces = {}
        self.prepared = {}
        self.stmt_cache.clear()
        self.fail_rules = deque()
        self.schema_version = uuid.uuid4()
        self.stats = dict(frames=0, queries=0, prepares=0, executes=0, batches=0, batch_statements=0,
                          max_inflight=0, errors=0, connections_total=0, writes=0,
                          compressed_in=0, compressed_out=0)
        for ksname, tables in SYSTEM_TABLES.items():
            strategy = {"class": "org.apache.cassandra.locator.LocalStrategy"}
            if ksname == "system_schema":
                strategy = dict(strategy)
            k = self.keyspaces[ksname] = Keyspace(ksname, strategy, True, system=True)
            for name, cols, pk, ck, provider in tables:
                k.tables[name] = Table(ksname, name, cols, pk, ck, provider=provider)

    def reset_user(self):
        """Control `reset`: user keyspaces, prepared ids, fail rules, stats."""
        for name in [n for n, k in self.keyspaces.items() if not k.system]:
            del self.keyspaces[name]
        self.prepared.clear()
        self.stmt_cache.clear()
        self.fail_rules.clear()
        for k in self.stats:
            self.stats[k] = 0
        self.schema_version = uuid.uuid4()

    def next_ts(self):
        ts = int(time.time() * 1000000)
        if ts <= self._last_ts:
            ts = self._last_ts + 1
        self._last_ts = ts
        return ts

    # -- fault injection
    def add_fail(self, kind, count):
        if kind not in FAIL_KINDS:
            raise ValueError("unknown fail kind %r (one of %s)" % (kind, ", ".join(FAIL_KINDS)))
        if count <= 0:
            self.fail_rules.clear()
        else:
            self.fail_rules.append([kind, count])

    def check_fail(self, write_type, consistency):
        """Called once per write request; raises the injected error, if any."""
        rules = self.fail_rules
        if not rules:
            return
        rule = rules[0]
        rule[1] -= 1
        if rule[1] <= 0:
            rules.popleft()
        kind = rule[0]
        cl = consistency if 0 <= consistency < len(CONSISTENCY) else 1
        cln = CONSISTENCY[cl]
        if kind == "unavailable":
            raise CqlError(T.UNAVAILABLE, "Cannot achieve consistency level %s" % cln,
                           S_SHORT.pack(cl) + S_INT.pack(1) + S_INT.pack(0))
        if kind == "write_timeout":
            raise CqlError(T.WRITE_TIMEOUT, "Operation timed out - received only 0 responses.",
                           S_SHORT.pack(cl) + S_INT.pack(0) + S_INT.pack(1) + enc_string(write_type))
        if kind == "read_timeout":
            raise CqlError(T.READ_TIMEOUT, "Operation timed out - received only 0 responses.",
                           S_SHORT.pack(cl) + S_INT.pack(0) + S_INT.pack(1) + b"\x00")
        if kind == "overloaded":
            raise CqlError(T.OVERLOADED, "Server is in overloaded state. Cannot accept more requests at this point")
        if kind == "truncate_error":
            raise CqlError(T.TRUNCATE_ERROR, "Error during truncate: injected truncate error")
        raise CqlError(T.SERVER_ERROR, "java.lang.RuntimeException: injected server error")

    # -- compile
    def parse(self, query):
        node = self.ast_cache.get(query)
        if node is None:
            node = cqlparse.parse(query)
            if len(self.ast_cache) > 5000:
                self.ast_cache.clear()
            self.ast_cache[query] = node
        return node

    def compile(self, node, conn_ks):
        k = node.kind
        if k == "insert":
            return InsertStmt(self, node, conn_ks)
        if k == "update":
            return UpdateStmt(self, node, conn_ks)
        if k == "delete":
            return DeleteStmt(self, node, conn_ks)
        if k == "select":
            return SelectStmt(self, node, conn_ks)
        if k == "batch":
            return BatchStmt(self, node, conn_ks)
        return DdlStmt(node)

    def statement(self, query, conn_ks):
        """Compiled statement for a QUERY (cached per keyspace and text)."""
        key = (conn_ks, query)
        st = self.stmt_cache.get(key)
        if st is None:
            st = self.compile(self.parse(query), conn_ks)
            if not isinstance(st, DdlStmt):
                if len(self.stmt_cache) > 5000:
                    self.stmt_cache.clear()
                self.stmt_cache[key] = st
        return st

    def prepare(self, query, conn_ks):
        node = self.parse(query)
        qualified_ks = getattr(node, "ks", None)
        st = self.compile(node, conn_ks)
        pid = hashlib.md5(((conn_ks or "") if not qualified_ks else "").encode() + query.encode()).digest()
        self.prepared[pid] = (st, query, conn_ks)
        return pid, st

    # -- schema changes
    def _schema_changed(self, tables=()):
        self.schema_version = uuid.uuid4()
        self.stmt_cache.clear()
        if tables:
            ids = set(id(t) for t in tables)
            for pid in [pid for pid, (st, _, _) in self.prepared.items() if self._uses(st, ids)]:
                del self.prepared[pid]

    @staticmethod
    def _uses(st, ids):
        if isinstance(st, BatchStmt):
            return any(id(s.table) in ids for s, _, _ in st.stmts)
        return st.table is not None and id(st.table) in ids

    def ddl(self, node, conn):
        k = node.kind
        if k == "use":
            if node.ks not in self.keyspaces:
                raise Invalid("Keyspace '%s' does not exist" % node.ks)
            conn.keyspace = node.ks
            return S_INT.pack(3) + enc_string(node.ks)
        if k == "create_keyspace":
            return self._create_keyspace(node)
        if k == "create_table":
            return self._create_table(node, conn.keyspace)
        if k == "alter_table":
            t = _resolve_table(self, node.ks, node.table, conn.keyspace)
            _no_system_writes(t)
            for name, tname in node.add:
                if name in t.columns:
                    raise Invalid("Invalid column name %s because it conflicts with an existing column" % name)
            for name, tname in node.add:
                t.add_column(name, T.NATIVE[tname])
            self._schema_changed([t])
            return schema_change("UPDATED", "TABLE", t.ks, t.name)
        if k == "drop":
            return self._drop(node, conn.keyspace)
        if k == "truncate":
            t = _resolve_table(self, node.ks, node.table, conn.keyspace)
            _no_system_writes(t)
            t.parts = {}
            t._sorted = None
            return RESULT_VOID
        raise Invalid("Unsupported statement %s" % k)

    def _create_keyspace(self, node):
        name = node.name
        if not valid_name(name):
            raise Invalid('Keyspace name must not be empty, more than 48 characters long, or contain '
                          'non-alphanumeric-underscore characters (got "%s")' % name)
        if name in self.keyspaces:
            if node.if_not_exists:
                return RESULT_VOID
            raise CqlError(T.ALREADY_EXISTS, 'Cannot add existing keyspace "%s"' % name,
                           enc_string(name) + enc_string(""))
        repl = node.props.get("replication")
        if not isinstance(repl, Coll) or not repl.map:
            raise CqlError(T.CONFIG_ERROR, "Missing mandatory replication strategy class")
        replication = {}
        for kt, vt in repl.items:
            replication[_lit_str(kt, "replication")] = _lit_str(vt, "replication")
        cls = replication.get("class")
        if not cls:
            raise CqlError(T.CONFIG_ERROR, "Missing mandatory replication strategy class")
        full = STRATEGIES.get(cls.lower()) or STRATEGIES.get(cls.rsplit(".", 1)[-1].lower())
        if full is None:
            raise CqlError(T.CONFIG_ERROR, "Unable to find replication strategy class 'org.apache.cassandra.locator.%s'"
                           % cls)
        replication["class"] = full
        if full.endswith("SimpleStrategy") and "replication_factor" not in replication:
            raise CqlError(T.CONFIG_ERROR, "SimpleStrategy requires a replication_factor strategy option.")
        for key, v in replication.items():
            if key != "class" and not v.isdigit():
                raise CqlError(T.CONFIG_ERROR, "Replication factor must be non-negative; found %s" % v)
        durable = True
        for key, term in node.props.items():
            if key == "durable_writes":
                durable = _lit_str(term, key).lower() == "true"
            elif key != "replication":
                raise CqlError(T.SYNTAX_ERROR, "Unknown property '%s'" % key)
        self.keyspaces[name] = Keyspace(name, replication, durable)
        self._schema_changed()
        return schema_change("CREATED", "KEYSPACE", name)

    def _create_table(self, node, conn_ks):
        ksname = node.ks or conn_ks
        if not ksname:
            raise Invalid("No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename")
        ks = self.keyspaces.get(ksname)
        if ks is None:
            raise Invalid("Keyspace '%s' does not exist" % ksname)
        if ks.system:
            raise CqlError(T.UNAUTHORIZED, "%s keyspace is not user-modifiable." % ksname)
        name = node.table
        if not valid_name(name):
            raise Invalid('Table name must not be empty, more than 48 characters long, or contain '
                          'non-alphanumeric-underscore characters (got "%s")' % name)
        if name in ks.tables:
            if node.if_not_exists:
                return RESULT_VOID
            raise CqlError(T.ALREADY_EXISTS, 'Cannot add already existing table "%s" to keyspace "%s"' % (name, ksname),
                           enc_string(ksname) + enc_string(name))
        seen = set()
        for cname, _ in node.columns:
            if cname in seen:
                raise Invalid("Multiple definition of identifier %s" % cname)
            seen.add(cname)
        if not node.pk:
            raise Invalid("No PRIMARY KEY specifed (exactly one required)")
        for c in node.pk + node.ck:
            if c not in seen:
                raise Invalid("Unknown definition %s referenced in PRIMARY KEY" % c)
        if len(set(node.pk + node.ck)) != len(node.pk + node.ck):
            raise Invalid("Duplicate column in PRIMARY KEY")
        order = {}
        if node.order:
            names = [c for c, _ in node.order]
            for c in names:
                if c not in node.ck:
                    raise Invalid("Only clustering key columns can be defined in CLUSTERING ORDER directive")
            if names != node.ck[:len(names)]:
                raise Invalid("The order of columns in the CLUSTERING ORDER directive must be the one of the "
                              "clustering key")
            order = dict(node.order)
        props = {}
        for key, term in node.props.items():
            if key not in TABLE_PROPS:
                raise CqlError(T.SYNTAX_ERROR, "Unknown property '%s'" % key)
            if key == "default_time_to_live":
                if not isinstance(term, Lit) or term.kind != "int":
                    raise CqlError(T.SYNTAX_ERROR, "Invalid value for property 'default_time_to_live'")
                ttl = int(term.text)
                if ttl < 0 or ttl > MAX_TTL:
                    raise CqlError(T.CONFIG_ERROR, "default_time_to_live must be greater than or equal to 0 "
                                                    "(got %d)" % ttl)
                props[key] = ttl
            elif key == "comment":
                props[key] = _lit_str(term, key)
        cols = [(c, T.NATIVE[tn]) for c, tn in node.columns]
        ks.tables[name] = Table(ksname, name, cols, node.pk, node.ck, order, props)
        self._schema_changed()
        return schema_change("CREATED", "TABLE", ksname, name)

    def _drop(self, node, conn_ks):
        if node.what == "keyspace":
            ks = self.keyspaces.get(node.ks)
            if ks is None:
                if node.if_exists:
                    return RESULT_VOID
                raise CqlError(T.CONFIG_ERROR, "Cannot drop non existing keyspace '%s'." % node.ks)
            if ks.system:
                raise CqlError(T.UNAUTHORIZED, "%s keyspace is not user-modifiable." % node.ks)
            del self.keyspaces[node.ks]
            self._schema_changed(list(ks.tables.values()))
            return schema_change("DROPPED", "KEYSPACE", node.ks)
        ksname = node.ks or conn_ks
        if not ksname:
            raise Invalid("No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename")
        ks = self.keyspaces.get(ksname)
        if ks is None:
            if node.if_exists:
                return RESULT_VOID
            raise Invalid("Keyspace '%s' does not exist" % ksname)
        t = ks.tables.get(node.table)
        if t is None:
            if node.if_exists:
                return RESULT_VOID
            raise CqlError(T.CONFIG_ERROR, "Cannot drop non existing table '%s' in keyspace '%s'."
                           % (node.table, ksname))
        if ks.system:
            raise CqlError(T.UNAUTHORIZED, "%s keyspace is not user-modifiable." % ksname)
        del ks.tables[node.table]
        self._schema_changed([t])
        return schema_change("DROPPED", "TABLE", ksname, node.table)

    # -- control backdoor
    def dump(self, ks, name):
        k = self.keyspaces.get(ks)
        if k is None:
            raise Invalid("Keyspace '%s' does not exist" % ks)
        t = k.tables.get(name)
        if t is None:
            raise Invalid("unconfigured table %s" % name)
        if t.provider is not None:
            t.provider(self, None, t)
        now = int(time.time())
        star = t.star
        nk = len(t.pk) + len(t.ck)
        regs = star[nk:]
        rows = []
        ttls = []
        to_json = T.to_json
        for _sk, pk, ck in t.sorted_all():
            row = t.parts[pk][ck]
            if not row_live(row, now):
                continue
            vals = [to_json(c.type, v) for c, v in zip(star, pk + ck)]
            tl = [None] * nk
            cells = row[1]
            for c in regs:
                cell = cells.get(c.name)
                if cell is None or cell[0] is None or (cell[2] and cell[2] <= now):
                    vals.append(None)
                    tl.append(None)
                else:
                    vals.append(to_json(c.type, cell[0]))
                    tl.append(cell[2] - now if cell[2] else None)
            rows.append(vals)
            ttls.append(tl)
        return {"columns": [c.name for c in star], "rows": rows, "ttl": ttls}
