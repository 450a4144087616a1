"""cqltypes - CQL errors, native types, value validation and conversions.

Values are kept exactly as the v4 protocol serializes them (raw bytes); this
module validates them the way Cassandra's serializers do, converts CQL
literals to raw bytes, raw bytes to sort keys and to JSON for `dump`, and
encodes Python values for the system tables.
"""
import datetime
import decimal
import ipaddress
import math
import re
import struct
import uuid

# ---- errors ---------------------------------------------------------------

SERVER_ERROR = 0x0000
PROTOCOL_ERROR = 0x000A
BAD_CREDENTIALS = 0x0100
UNAVAILABLE = 0x1000
OVERLOADED = 0x1001
TRUNCATE_ERROR = 0x1003
WRITE_TIMEOUT = 0x1100
READ_TIMEOUT = 0x1200
SYNTAX_ERROR = 0x2000
UNAUTHORIZED = 0x2100
INVALID = 0x2200
CONFIG_ERROR = 0x2300
ALREADY_EXISTS = 0x2400
UNPREPARED = 0x2500


class CqlError(Exception):
    """An ERROR response: code, message and the code-specific extra body."""

    def __init__(self, code, message, extra=b""):
        Exception.__init__(self, message)
        self.code = code
        self.message = message
        self.extra = extra


def Invalid(msg):
    return CqlError(INVALID, msg)


def ProtocolErr(msg):
    return CqlError(PROTOCOL_ERROR, msg)


def SyntaxErr(msg):
    return CqlError(SYNTAX_ERROR, msg)


UNSET = object()   # [value] of length -2: "not set"

# ---- small encoders ---------------------------------------------------------

S_INT = struct.Struct(">i")
S_SHORT = struct.Struct(">H")
S_LONG = struct.Struct(">q")
S_DOUBLE = struct.Struct(">d")
S_FLOAT = struct.Struct(">f")


def enc_string(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return S_SHORT.pack(len(b)) + b


def enc_bytes(b):
    if b is None:
        return b"\xff\xff\xff\xff"
    return S_INT.pack(len(b)) + b


def enc_varint(n):
    return n.to_bytes(((n + (n < 0)).bit_length() // 8) + 1, "big", signed=True)


def dec_varint(b):
    return int.from_bytes(b, "big", signed=True)


# ---- types ------------------------------------------------------------------

# validation codes (inlined in the engine's hot loop)
V_NONE, V_FIXED_OR_EMPTY, V_FIXED, V_TEXT, V_ASCII, V_TIMEUUID, V_DECIMAL, V_INET = range(8)

EPOCH_DAYS = 1 << 31          # date: unsigned days, 1970-01-01 == 2^31
DATE_ORIGIN = datetime.date(1970, 1, 1)


class CType:
    """A CQL type. Native types have vcode/varg/vmsg for validation; collection
    types (only used by the system tables) have subtypes."""
    __slots__ = ("name", "opt", "subs", "vcode", "varg", "vmsg")

    def __init__(self, name, opt, vcode=V_NONE, varg=0, vmsg=None, subs=()):
        self.name = name
        self.opt = opt
        self.vcode = vcode
        self.varg = varg
        self.vmsg = vmsg
        self.subs = subs

    def option(self):
        """[option] encoding used in result metadata."""
        out = S_SHORT.pack(self.opt)
        for s in self.subs:
            out += s.option()
        return out

    @property
    def native(self):
        return not self.subs

    def __repr__(self):
        return self.name


NATIVE = {}


def _native(name, opt, vcode=V_NONE, varg=0, vmsg=None):
    t = CType(name, opt, vcode, varg, vmsg)
    NATIVE[name] = t
    return t


ASCII = _native("ascii", 0x01, V_ASCII)
BIGINT = _native("bigint", 0x02, V_FIXED_OR_EMPTY, 8, "Expected 8 or 0 byte long (%d)")
BLOB = _native("blob", 0x03)
BOOLEAN = _native("boolean", 0x04, V_FIXED_OR_EMPTY, 1, "Expected 1 or 0 byte value (%d)")
DECIMAL = _native("decimal", 0x06, V_DECIMAL, 4, "Expected 0 or at least 4 bytes (%d)")
DOUBLE = _native("double", 0x07, V_FIXED_OR_EMPTY, 8, "Expected 8 or 0 byte value for a double (%d)")
FLOAT = _native("float", 0x08, V_FIXED_OR_EMPTY, 4, "Expected 4 or 0 byte value for a float (%d)")
INT = _native("int", 0x09, V_FIXED_OR_EMPTY, 4, "Expected 4 or 0 byte int (%d)")
TIMESTAMP = _native("timestamp", 0x0B, V_FIXED_OR_EMPTY, 8, "Expected 8 or 0 byte long for date (%d)")
UUID = _native("uuid", 0x0C, V_FIXED_OR_EMPTY, 16, "UUID should be 16 or 0 bytes (%d)")
TEXT = _native("text", 0x0D, V_TEXT)
VARINT = _native("varint", 0x0E)
TIMEUUID = _native("timeuuid", 0x0F, V_TIMEUUID, 16, "UUID should be 16 or 0 bytes (%d)")
INET = _native("inet", 0x10, V_INET)
DATE = _native("date", 0x11, V_FIXED, 4, "Expected 4 byte long for date (%d)")
TIME = _native("time", 0x12, V_FIXED, 8, "Expected 8 byte long for time (%d)")
SMALLINT = _native("smallint", 0x13, V_FIXED, 2, "Expected 2 bytes for a smallint (%d)")
TINYINT = _native("tinyint", 0x14, V_FIXED, 1, "Expected 1 byte for a tinyint (%d)")
NATIVE["varchar"] = TEXT

UNSUPPORTED_TYPES = ("counter", "duration", "list", "set", "map", "tuple", "frozen")


def list_of(t):
    return CType("frozen<list<%s>>" % t.name, 0x20, subs=(t,))


def set_of(t):
    return CType("frozen<set<%s>>" % t.name, 0x22, subs=(t,))


def map_of(k, v):
    return CType("frozen<map<%s, %s>>" % (k.name, v.name), 0x21, subs=(k, v))


def validate(t, v):
    """Raises Invalid if raw value v (bytes, non-null) is not a valid t."""
    code = t.vcode
    n = len(v)
    if code == V_NONE:
        return
    if code == V_FIXED_OR_EMPTY:
        if n != t.varg and n:
            raise Invalid(t.vmsg % n)
    elif code == V_FIXED:
        if n != t.varg:
            raise Invalid(t.vmsg % n)
    elif code == V_TEXT:
        try:
            v.decode("utf-8")
        except UnicodeDecodeError:
            raise Invalid("String didn't validate.")
    elif code == V_ASCII:
        if not v.isascii():
            raise Invalid("Invalid byte for ascii: %d" % _first_non_ascii(v))
    elif code == V_TIMEUUID:
        if n != 16 and n:
            raise Invalid(t.vmsg % n)
        if n and (v[6] & 0xF0) != 0x10:
            raise Invalid("Invalid version for TimeUUID type.")
    elif code == V_DECIMAL:
        if n and n < 4:
            raise Invalid(t.vmsg % n)
    elif code == V_INET:
        if n not in (0, 4, 16):
            raise Invalid("Expected 4 or 16 byte inetaddress; got %d bytes" % n)


def _first_non_ascii(v):
    for b in v:
        if b > 127:
            return b - 256
    return 0


# ---- sort keys (clustering / partition order) ---------------------------------

def _sk_signed(v):
    return int.from_bytes(v, "big", signed=True)


def _sk_double(v):
    return S_DOUBLE.unpack(v)[0]


def _sk_float(v):
    return S_FLOAT.unpack(v)[0]


def _sk_decimal(v):
    return decimal.Decimal(dec_varint(v[4:])).scaleb(-S_INT.unpack_from(v)[0])


def _uuid_ts(v):
    return ((v[6] & 0x0F) << 56) | (v[7] << 48) | (v[4] << 40) | (v[5] << 32) | int.from_bytes(v[0:4], "big")


def _sk_timeuuid(v):
    return (_uuid_ts(v), v)


def _sk_uuid(v):
    ver = v[6] >> 4
    return (ver, _uuid_ts(v) if ver == 1 else 0, v)


_SORT = {
    "bigint": _sk_signed, "int": _sk_signed, "smallint": _sk_signed, "tinyint": _sk_signed,
    "varint": _sk_signed, "timestamp": _sk_signed, "time": _sk_signed,
    "double": _sk_double, "float": _sk_float, "decimal": _sk_decimal,
    "timeuuid": _sk_timeuuid, "uuid": _sk_uuid,
}


def sort_fn(t, allow_empty=True):
    """A function raw -> comparable key; None when raw bytes already compare
    in CQL order (text, ascii, blob, inet, date, boolean)."""
    f = _SORT.get(t.name)
    if f is None:
        return None
    if not allow_empty:
        return f

    def key(v, f=f):
        return (1, f(v)) if v else (0,)
    return key


class Desc:
    """Reverses the order of a sort key (CLUSTERING ORDER BY ... DESC)."""
    __slots__ = ("k",)

    def __init__(self, k):
        self.k = k

    def __lt__(self, o):
        return o.k < self.k

    def __gt__(self, o):
        return self.k < o.k

    def __eq__(self, o):
        return self.k == o.k

    def __hash__(self):
        return hash(self.k)


# ---- raw -> Python / JSON ------------------------------------------------------

def _json_float(x):
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def date_str(days_unsigned):
    d = days_unsigned - EPOCH_DAYS
    try:
        return (DATE_ORIGIN + datetime.timedelta(days=d)).isoformat()
    except OverflowError:
        return d


def to_json(t, v):
    """JSON-able value of raw v (None for null) as `dump` reports it."""
    if v is None:
        return None
    name = t.name
    if name in ("text", "ascii"):
        return v.decode("utf-8")
    if not v:
        return ""                      # empty (0-byte) value of a non-string type
    if name in ("int", "bigint", "smallint", "tinyint", "timestamp", "time"):
        return int.from_bytes(v, "big", signed=True)
    if name == "varint":
        return str(dec_varint(v))
    if name == "decimal":
        return str(_sk_decimal(v))
    if name == "double":
        return _json_float(S_DOUBLE.unpack(v)[0])
    if name == "float":
        return _json_float(S_FLOAT.unpack(v)[0])
    if name == "boolean":
        return v[0] != 0
    if name in ("uuid", "timeuuid"):
        return str(uuid.UUID(bytes=bytes(v)))
    if name == "date":
        return date_str(int.from_bytes(v, "big"))
    if name == "inet":
        return str(ipaddress.ip_address(bytes(v)))
    if name == "blob":
        return v.hex()
    return v.hex()


# ---- Python -> raw (system tables) ---------------------------------------------

def encode(t, x):
    """Raw bytes for Python value x of type t (None -> None)."""
    if x is None:
        return None
    name = t.name
    if name in ("text", "ascii"):
        return x.encode("utf-8")
    if name == "int":
        return S_INT.pack(x)
    if name in ("bigint", "timestamp"):
        return S_LONG.pack(x)
    if name == "double":
        return S_DOUBLE.pack(x)
    if name == "boolean":
        return b"\x01" if x else b"\x00"
    if name in ("uuid", "timeuuid"):
        return x.bytes
    if name == "inet":
        return ipaddress.ip_address(x).packed
    if name == "blob":
        return bytes(x)
    if t.opt in (0x20, 0x22):          # list / set
        items = sorted(x) if t.opt == 0x22 else list(x)
        return S_INT.pack(len(items)) + b"".join(enc_bytes(encode(t.subs[0], i)) for i in items)
    if t.opt == 0x21:                   # map
        out = [S_INT.pack(len(x))]
        for k in sorted(x):
            out.append(enc_bytes(encode(t.subs[0], k)))
            out.append(enc_bytes(encode(t.subs[1], x[k])))
        return b"".join(out)
    raise ValueError("cannot encode %s" % name)


# ---- CQL literals -> raw ---------------------------------------------------------

_TS_RE = re.compile(r"^(-?\d{1,9})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,9}))?)?)?"
                    r"\s*(Z|[+-]\d{2}:?\d{2}|[+-]\d{2})?$")
_TIME_RE = re.compile(r"^(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,9}))?$")
_DATE_RE = re.compile(r"^(-?\d{1,9})-(\d{1,2})-(\d{1,2})$")

_INT_RANGE = {"tinyint": (1, "tinyint"), "smallint": (2, "smallint"), "int": (4, "int"), "bigint": (8, "bigint"),
              "counter": (8, "counter"), "timestamp": (8, "timestamp")}

KIND_NAMES = {"str": "STRING", "int": "INTEGER", "float": "FLOAT", "uuid": "UUID", "hex": "HEX",
              "bool": "BOOLEAN", "dur": "DURATION"}


def _bad_literal(kind, text, col, t):
    return Invalid('Invalid %s constant (%s) for "%s" of type %s' % (KIND_NAMES.get(kind, kind.upper()), text, col, t.name))


def parse_timestamp(s):
    """ms since epoch of a CQL timestamp string (no zone = UTC)."""
    m = _TS_RE.match(s.strip())
    if not m:
        raise ValueError(s)
    y, mo, d, hh, mi, ss, frac, zone = m.groups()
    dt = datetime.datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0),
                           tzinfo=datetime.timezone.utc)
    ms = (dt - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)) // datetime.timedelta(milliseconds=1)
    if frac:
        ms += int((frac + "00")[:3])
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        z = zone[1:].replace(":", "")
        off = int(z[:2]) * 60 + (int(z[2:4]) if len(z) > 2 else 0)
        ms -= sign * off * 60000
    return ms


def parse_date(s):
    m = _DATE_RE.match(s.strip())
    if not m:
        raise ValueError(s)
    d = datetime.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    return (d - DATE_ORIGIN).days + EPOCH_DAYS


def parse_time(s):
    m = _TIME_RE.match(s.strip())
    if not m:
        raise ValueError(s)
    h, mi, sec, frac = m.groups()
    h, mi, sec = int(h), int(mi), int(sec)
    if h > 23 or mi > 59 or sec > 59:
        raise ValueError(s)
    ns = ((h * 60 + mi) * 60 + sec) * 1000000000
    if frac:
        ns += int((frac + "000000000")[:9])
    return ns


def literal(t, kind, text, col):
    """Raw bytes for a CQL constant (kind from the lexer) bound to column col of type t."""
    name = t.name
    try:
        if kind == "int":
            n = int(text)
            if name in _INT_RANGE:
                size = _INT_RANGE[name][0]
                try:
                    return n.to_bytes(size, "big", signed=True)
                except OverflowError:
                    raise Invalid("Invalid %s value %s for \"%s\"" % (name, text, col)) from None
            if name == "varint":
                return enc_varint(n)
            if name == "decimal":
                return S_INT.pack(0) + enc_varint(n)
            if name == "double":
                return S_DOUBLE.pack(float(n))
            if name == "float":
                return S_FLOAT.pack(float(n))
            if name == "date":
                if not 0 <= n < (1 << 32):
                    raise ValueError(text)
                return n.to_bytes(4, "big")
            if name == "time":
                if not 0 <= n <= 86399999999999:
                    raise ValueError(text)
                return S_LONG.pack(n)
        elif kind == "float":
            if name == "double":
                return S_DOUBLE.pack(float(text))
            if name == "float":
                return S_FLOAT.pack(float(text))
            if name == "decimal":
                d = decimal.Decimal(text)
                sign, digits, exp = d.as_tuple()
                unscaled = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
                return S_INT.pack(-exp) + enc_varint(unscaled)
        elif kind == "str":
            if name == "text":
                return text.encode("utf-8")
            if name == "ascii":
                b = text.encode("utf-8")
                validate(t, b)
                return b
            if name == "timestamp":
                return S_LONG.pack(parse_timestamp(text))
            if name == "date":
                return parse_date(text).to_bytes(4, "big")
            if name == "time":
                return S_LONG.pack(parse_time(text))
            if name == "inet":
                return ipaddress.ip_address(text).packed
        elif kind == "uuid":
            if name in ("uuid", "timeuuid"):
                b = uuid.UUID(text).bytes
                validate(t, b)
                return b
        elif kind == "hex":
            if name == "blob":
                return bytes.fromhex(text[2:])
        elif kind == "bool":
            if name == "boolean":
                return b"\x01" if text.lower() == "true" else b"\x00"
    except CqlError:
        raise
    except (ValueError, OverflowError, decimal.InvalidOperation, struct.error):
        raise _bad_literal(kind, text, col, t) from None
    raise _bad_literal(kind, text, col, t)
