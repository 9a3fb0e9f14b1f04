#!/usr/bin/env python3
"""An independent reference of the Amazon States Language's data flow, for the differential test
of `baton import asl` (cli/tests/asl_import.rs). It interprets a definition directly, state by
state, following the States Language specification (https://states-language.net/spec.html):
InputPath -> Parameters -> (task) -> ResultSelector -> ResultPath -> OutputPath, Choice rules,
Parallel, Map, Retry and Catch, variables (Assign and $name), and JSONata's Arguments, Items,
ItemSelector and Output. Task results come from the case file, by state name.

It shares no code with the converter (which is Rust and emits jq); it is written from the spec.

usage: reference.py DEFINITION.asl.json CASE.json WORKFLOW_NAME
prints {"status": "succeeded", "output": ...} or {"status": "failed", "error": ..., "cause": ...}
"""
import base64
import hashlib
import copy
import json
import math
import re
import sys


class Failure(Exception):
    def __init__(self, error, cause=""):
        super().__init__(error)
        self.error = error
        self.cause = cause


# ---- paths ------------------------------------------------------------------------------------

def split_steps(rest):
    """'.a[0]..b[*][?(@.x > 1)]' -> [('key','a'), ('index',0), ('descend','b'), ('wild',None), ('filter','@.x > 1')]"""
    out, i = [], 0
    while i < len(rest):
        if rest.startswith("..", i):
            j = i + 2
            while j < len(rest) and rest[j] not in ".[":
                j += 1
            out.append(("descend", rest[i + 2:j]))
            i = j
        elif rest[i] == ".":
            j = i + 1
            while j < len(rest) and rest[j] not in ".[":
                j += 1
            name = rest[i + 1:j]
            out.append(("wild", None) if name == "*" else ("key", name))
            i = j
        elif rest[i] == "[":
            depth, j, quote = 0, i, None
            while True:
                c = rest[j]
                if quote:
                    quote = None if c == quote else quote
                elif c in "'\"":
                    quote = c
                elif c == "[":
                    depth += 1
                elif c == "]":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            inner = rest[i + 1:j].strip()
            if inner == "*":
                out.append(("wild", None))
            elif inner.startswith("?"):
                out.append(("filter", inner[1:].strip()[1:-1]))
            elif inner[:1] in ("'", '"') and inner[-1:] == inner[:1] and "," not in inner:
                out.append(("key", inner[1:-1]))
            elif ":" in inner:
                a, b = inner.split(":")
                out.append(("slice", (int(a) if a.strip() else None, int(b) if b.strip() else None)))
            elif "," in inner:
                out.append(("union", [p.strip()[1:-1] if p.strip()[:1] in "'\"" else int(p) for p in inner.split(",")]))
            else:
                out.append(("index", int(inner)))
            i = j + 1
        else:
            raise Failure("States.Runtime", "bad path " + rest)
    return out


def parse_path(p):
    """'$.a[0]['b c']' -> ['a', 0, 'b c'] (a definite path)"""
    assert p.startswith("$"), p
    return [v for _, v in split_steps(p[1:])]


def definite(p):
    return all(k in ("key", "index") for k, _ in split_steps(p.lstrip("$")))


def lookup(value, segs):
    """(found, value)"""
    for s in segs:
        if isinstance(s, int):
            if isinstance(value, list) and -len(value) <= s < len(value):
                value = value[s]
            else:
                return False, None
        else:
            if isinstance(value, dict) and s in value:
                value = value[s]
            else:
                return False, None
    return True, value


def walk_all(v):
    yield v
    if isinstance(v, dict):
        for x in v.values():
            yield from walk_all(x)
    elif isinstance(v, list):
        for x in v:
            yield from walk_all(x)


def select_all(nodes, steps):
    """Every value an indefinite path finds, in document order."""
    for kind, arg in steps:
        nxt = []
        for n in nodes:
            if kind in ("key", "index"):
                found, v = lookup(n, [arg])
                if found:
                    nxt.append(v)
            elif kind == "wild":
                nxt.extend(n.values() if isinstance(n, dict) else n if isinstance(n, list) else [])
            elif kind == "slice":
                if isinstance(n, list):
                    nxt.extend(n[arg[0]:arg[1]])
            elif kind == "union":
                for a in arg:
                    found, v = lookup(n, [a])
                    if found:
                        nxt.append(v)
            elif kind == "descend":
                nxt.extend(x[arg] for x in walk_all(n) if isinstance(x, dict) and arg in x)
            elif kind == "filter":
                if isinstance(n, list):
                    nxt.extend(x for x in n if filter_holds(arg, x))
        nodes = nxt
    return nodes


FTOK = re.compile(r"\s*(@[^\s=!<>&|)]*|'[^']*'|\"[^\"]*\"|==|!=|<=|>=|&&|\|\||[<>!()]|[^\s=!<>&|()]+)")


def filter_holds(src, elem):
    toks, pos = [], 0
    while pos < len(src.strip()):
        m = FTOK.match(src.strip(), pos)
        toks.append(m.group(1))
        pos = m.end()
    toks.append(None)
    k = [0]

    def peek():
        return toks[k[0]]

    def take():
        k[0] += 1
        return toks[k[0] - 1]

    def operand(t):
        """(present, value)"""
        if t.startswith("@"):
            return lookup(elem, parse_path("$" + t[1:]))
        if t[0] in "'\"":
            return True, t[1:-1]
        return True, json.loads(t)

    def cmp():
        if peek() == "(":
            take()
            v = orx()
            take()
            return v
        if peek() == "!":
            take()
            return not cmp()
        found_a, a = operand(take())
        if peek() not in ("==", "!=", "<", "<=", ">", ">="):
            return found_a
        op = take()
        found_b, b = operand(take())
        if not (found_a and found_b):
            return False
        if op == "==":
            return a == b
        if op == "!=":
            return a != b
        num = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)
        if not ((num(a) and num(b)) or (isinstance(a, str) and isinstance(b, str))):
            return False
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]

    def andx():
        v = cmp()
        while peek() == "&&":
            take()
            v = cmp() and v
        return v

    def orx():
        v = andx()
        while peek() == "||":
            take()
            v = andx() or v
        return v

    return orx()


VAR = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)(.*)$")


def get(path, data, ctx):
    var = VAR.match(path)
    if var:
        # A workflow variable: `$name`, then a path into its value.
        base, rest = ctx["__vars"].get(var.group(1), None), var.group(2)
        if var.group(1) not in ctx["__vars"]:
            raise Failure("States.Runtime", "variable %s not assigned" % var.group(1))
    elif path.startswith("$$"):
        base, rest = ctx, path[2:]
    else:
        base, rest = data, path[1:]
    if not definite(rest):
        return copy.deepcopy(select_all([base], split_steps(rest)))
    found, v = lookup(base, [x for _, x in split_steps(rest)])
    if not found:
        raise Failure("States.Runtime", "path %s not found" % path)
    return copy.deepcopy(v)


def put(data, path, value):
    segs = parse_path(path)
    if not segs:
        return value
    data = copy.deepcopy(data)
    cur = data
    for s in segs[:-1]:
        if s not in cur or not isinstance(cur[s], dict):
            cur[s] = {}
        cur = cur[s]
    cur[segs[-1]] = value
    return data


# ---- intrinsic functions ----------------------------------------------------------------------

def tokenize_args(src):
    """split 'a, States.X(b, c), 'd'' at top-level commas"""
    args, depth, cur, quote, i = [], 0, "", False, 0
    while i < len(src):
        c = src[i]
        if quote:
            cur += c
            if c == "\\":
                cur += src[i + 1]
                i += 1
            elif c == "'":
                quote = False
        elif c == "'":
            quote = True
            cur += c
        elif c in "([":
            depth += 1
            cur += c
        elif c in ")]":
            depth -= 1
            cur += c
        elif c == "," and depth == 0:
            args.append(cur.strip())
            cur = ""
        else:
            cur += c
        i += 1
    if cur.strip():
        args.append(cur.strip())
    return args


def unquote(s):
    out, i = [], 1
    while i < len(s) - 1:
        if s[i] == "\\":
            out.append(("lit", s[i + 1]))
            i += 2
        elif s[i:i + 2] == "{}":
            out.append(("hole", None))
            i += 2
        else:
            out.append(("lit", s[i]))
            i += 1
    return out


def arg_value(a, data, ctx):
    if a.startswith("'"):
        return "".join("{}" if k == "hole" else v for k, v in unquote(a))
    if a.startswith("$"):
        return get(a, data, ctx)
    if a.startswith("States."):
        return intrinsic(a, data, ctx)
    return json.loads(a)


def as_text(v):
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))


def intrinsic(src, data, ctx):
    name = src[:src.index("(")]
    raw = tokenize_args(src[src.index("(") + 1:src.rindex(")")])
    if name == "States.Format":
        parts, vals, out = unquote(raw[0]), [arg_value(a, data, ctx) for a in raw[1:]], ""
        for kind, v in parts:
            out += as_text(vals.pop(0)) if kind == "hole" else v
        return out
    a = [arg_value(x, data, ctx) for x in raw]
    if name == "States.StringToJson":
        return json.loads(a[0])
    if name == "States.JsonToString":
        return json.dumps(a[0], separators=(",", ":"))
    if name == "States.Array":
        return a
    if name == "States.ArrayPartition":
        return [a[0][i:i + a[1]] for i in range(0, len(a[0]), a[1])]
    if name == "States.ArrayContains":
        return a[1] in a[0]
    if name == "States.ArrayRange":
        return list(range(a[0], a[1] + 1, a[2]))
    if name == "States.ArrayGetItem":
        return a[0][a[1]]
    if name == "States.ArrayLength":
        return len(a[0])
    if name == "States.ArrayUnique":
        out = []
        for x in a[0]:
            if x not in out:
                out.append(x)
        return out
    if name == "States.Base64Encode":
        return base64.b64encode(a[0].encode()).decode()
    if name == "States.Base64Decode":
        return base64.b64decode(a[0]).decode()
    if name == "States.JsonMerge":
        merged = dict(a[0])
        merged.update(a[1])
        return merged
    if name == "States.MathAdd":
        return a[0] + a[1]
    if name == "States.Hash":
        algorithms = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}
        return hashlib.new(algorithms[a[1]], a[0].encode()).hexdigest()
    if name == "States.StringSplit":
        return [p for p in re.split("[" + re.escape(a[1]) + "]", a[0]) if p != ""]
    raise Failure("States.Runtime", "intrinsic " + name)


# ---- payload templates and data flow -----------------------------------------------------------

def template(t, data, ctx):
    if isinstance(t, dict):
        out = {}
        for k, v in t.items():
            if k.endswith(".$"):
                out[k[:-2]] = intrinsic(v, data, ctx) if v.startswith("States.") else get(v, data, ctx)
            else:
                out[k] = template(v, data, ctx)
        return out
    if isinstance(t, list):
        return [template(x, data, ctx) for x in t]
    return t


def input_path(st, raw, ctx):
    if "InputPath" not in st:
        return raw
    return {} if st["InputPath"] is None else get(st["InputPath"], raw, ctx)


def output_path(st, value, ctx):
    if "OutputPath" not in st:
        return value
    return {} if st["OutputPath"] is None else get(st["OutputPath"], value, ctx)


def result_path(path_present, path, raw, result):
    if not path_present:
        return result
    if path is None:
        return raw
    return put(raw, path, result)


# ---- JSONata (the subset Step Functions states commonly use) -------------------------------------

JTOK = re.compile(r"\s*(?:(\d+(?:\.\d+)?)|('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")|(\$?[A-Za-z_][A-Za-z0-9_]*)|(!=|<=|>=|[=<>&+\-*/%()\[\]{},:.?]))")


def jtokens(src):
    out, i = [], 0
    src = src.strip()
    while i < len(src):
        m = JTOK.match(src, i)
        if not m or m.end() == i:
            raise Failure("States.Runtime", "cannot read JSONata " + src)
        num, string, name, op = m.groups()
        if num:
            out.append(("num", float(num) if "." in num else int(num)))
        elif string:
            out.append(("str", json.loads('"' + string[1:-1].replace('"', '\\"') + '"') if string[0] == "'" else json.loads(string)))
        elif name:
            out.append(("name", name))
        else:
            out.append(("op", op))
        i = m.end()
    return out


def jtext(v):
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))


def jtruthy(v):
    return v not in (None, False, 0, "", [], {})


def sequence(values):
    """A JSONata result sequence as a value: nothing is undefined (None), one value is itself."""
    return None if not values else values[0] if len(values) == 1 else values


def jget(v, key):
    """JSONata's field step: on an array it maps over the elements and flattens."""
    if isinstance(v, dict):
        return v.get(key)
    if isinstance(v, list):
        out = []
        for x in v:
            y = jget(x, key) if isinstance(x, dict) else None
            if isinstance(y, list):
                out.extend(y)
            elif y is not None:
                out.append(y)
        return sequence(out)
    return None


class JEval:
    def __init__(self, src, env, item=None, tokens=None):
        self.t, self.i, self.env = (tokens if tokens is not None else jtokens(src)), 0, env
        # Inside a filter's predicate: the element names are read from.
        self.item = item

    def peek(self, kind, val=None):
        return self.i < len(self.t) and self.t[self.i][0] == kind and (val is None or self.t[self.i][1] == val)

    def take(self):
        self.i += 1
        return self.t[self.i - 1]

    def run(self):
        v = self.cond()
        assert self.i == len(self.t), self.t[self.i:]
        return v

    def cond(self):
        c = self.orx()
        if self.peek("op", "?"):
            self.take()
            a = self.cond()
            b = None
            if self.peek("op", ":"):
                self.take()
                b = self.cond()
            return a if jtruthy(c) else b
        return c

    def orx(self):
        v = self.andx()
        while self.peek("name", "or"):
            self.take()
            r = self.andx()
            v = jtruthy(v) or jtruthy(r)
        return v

    def andx(self):
        v = self.cmp()
        while self.peek("name", "and"):
            self.take()
            r = self.cmp()
            v = jtruthy(v) and jtruthy(r)
        return v

    def cmp(self):
        v = self.concat()
        for op in ("=", "!=", "<=", ">=", "<", ">"):
            if self.peek("op", op):
                self.take()
                r = self.concat()
                return {"=": v == r, "!=": v != r, "<=": v <= r, ">=": v >= r, "<": v < r, ">": v > r}[op]
        return v

    def concat(self):
        v = self.add()
        while self.peek("op", "&"):
            self.take()
            v = jtext(v) + jtext(self.add())
        return v

    def add(self):
        v = self.mul()
        while self.peek("op", "+") or self.peek("op", "-"):
            op = self.take()[1]
            r = self.mul()
            v = v + r if op == "+" else v - r
        return v

    def mul(self):
        v = self.post()
        while self.peek("op", "*") or self.peek("op", "/") or self.peek("op", "%"):
            op = self.take()[1]
            r = self.post()
            v = v * r if op == "*" else (v / r if op == "/" else v % r)
        return v

    def post(self):
        v = self.prim()
        while True:
            if self.peek("op", "."):
                self.take()
                key = self.take()[1]
                v = jget(v, key)
            elif self.peek("op", "[") and self.i + 3 < len(self.t) and self.t[self.i + 1] == ("op", "-") \
                    and self.t[self.i + 2][0] == "num" and self.t[self.i + 3] == ("op", "]"):
                self.take()
                self.take()
                n = -self.take()[1]
                self.take()
                v = v[n] if isinstance(v, list) and -len(v) <= n < len(v) else None
            elif self.peek("op", "[") and self.i + 2 < len(self.t) and self.t[self.i + 1][0] == "num" \
                    and self.t[self.i + 2] == ("op", "]"):
                self.take()
                n = self.take()[1]
                self.take()
                v = v[n] if isinstance(v, list) and -len(v) <= n < len(v) else None
            elif self.peek("op", "["):
                # A filter: the predicate's tokens, evaluated once per element.
                self.take()
                start, depth = self.i, 0
                while depth > 0 or self.t[self.i] != ("op", "]"):
                    depth += {"[": 1, "]": -1}.get(self.t[self.i][1], 0) if self.t[self.i][0] == "op" else 0
                    self.i += 1
                pred = self.t[start:self.i]
                self.take()
                elems = v if isinstance(v, list) else [] if v is None else [v]
                kept = []
                for k, x in enumerate(elems):
                    p = JEval(None, self.env, item=x, tokens=pred).run()
                    if isinstance(p, (int, float)) and not isinstance(p, bool):
                        # A number picks the element at that index (negative: from the end).
                        n = math.floor(p)
                        if (n + len(elems) if n < 0 else n) == k:
                            kept.append(x)
                    elif jtruthy(p):
                        kept.append(x)
                v = sequence(kept)
            else:
                return v

    def prim(self):
        kind, val = self.take()
        if kind in ("num", "str"):
            return val
        if kind == "op" and val == "(":
            v = self.cond()
            self.take()
            return v
        if kind == "op" and val in ("{", "["):
            # Object and array constructors.
            close, out = ("}", {}) if val == "{" else ("]", [])
            while not self.peek("op", close):
                if close == "}":
                    key = self.take()[1]
                    self.take()
                    out[key] = self.cond()
                else:
                    out.append(self.cond())
                if self.peek("op", ","):
                    self.take()
            self.take()
            return out
        if kind == "name" and val in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[val]
        if kind == "name" and val == "$" and self.item is not None:
            return self.item
        if kind == "name" and not val.startswith("$") and self.item is not None:
            return jget(self.item, val)
        if kind == "name" and val == "$states":
            self.take()
            return self.env[self.take()[1]]
        if kind == "name" and val.startswith("$") and val[1:] in self.env.get("__params", {}):
            return self.env["__params"][val[1:]]
        if kind == "name" and val.startswith("$") and not self.peek("op", "("):
            return copy.deepcopy(self.env["context"]["__vars"][val[1:]])
        if kind == "name" and val == "function":
            # A lambda: its parameter names and body tokens, called with positional arguments.
            self.take()
            names = []
            while not self.peek("op", ")"):
                names.append(self.take()[1][1:])
                if self.peek("op", ","):
                    self.take()
            self.take()
            self.take()
            start, depth = self.i, 0
            while depth > 0 or self.t[self.i] != ("op", "}"):
                if self.t[self.i][0] == "op":
                    depth += {"{": 1, "}": -1}.get(self.t[self.i][1], 0)
                self.i += 1
            body = self.t[start:self.i]
            self.take()
            env, item = self.env, self.item

            def call(*args):
                params = dict(env.get("__params", {}), **dict(zip(names, args)))
                return JEval(None, dict(env, __params=params), item=item, tokens=body).run()
            return call
        if kind == "name" and val.startswith("$"):
            self.take()
            args = []
            while not self.peek("op", ")"):
                args.append(self.cond())
                if self.peek("op", ","):
                    self.take()
            self.take()
            f = val[1:]
            a = args[0] if args else None
            if f in ("map", "filter", "reduce"):
                arr = a if isinstance(a, list) else [] if a is None else [a]
                fn = args[1]
                if f == "map":
                    return sequence([y for y in (fn(x, i, arr) for i, x in enumerate(arr)) if y is not None])
                if f == "filter":
                    return sequence([x for i, x in enumerate(arr) if jtruthy(fn(x, i, arr))])
                acc, start = (args[2], 0) if len(args) > 2 else ((arr[0] if arr else None), 1)
                for i in range(start, len(arr)):
                    acc = fn(acc, arr[i], i, arr)
                return acc
            return {
                "exists": lambda: a is not None,
                "count": lambda: len(a) if a is not None else 0,
                "length": lambda: len(a),
                "string": lambda: jtext(a),
                "number": lambda: float(a) if "." in str(a) else int(a),
                "not": lambda: not jtruthy(a),
                "uppercase": lambda: a.upper(),
                "lowercase": lambda: a.lower(),
                "sum": lambda: sum(a),
                "keys": lambda: list(a.keys()),
                "join": lambda: (args[1] if len(args) > 1 else "").join(a),
                "substring": lambda: jsubstring(a, *args[1:]),
                "substringBefore": lambda: a.split(args[1], 1)[0] if args[1] in a else a,
                "substringAfter": lambda: a.split(args[1], 1)[1] if args[1] in a else a,
                "contains": lambda: args[1] in a,
                "split": lambda: a.split(args[1])[: args[2]] if len(args) > 2 else a.split(args[1]),
                "trim": lambda: " ".join(a.split()),
                "abs": lambda: abs(a),
                "floor": lambda: math.floor(a),
                "ceil": lambda: math.ceil(a),
                "max": lambda: max(a) if a else None,
                "min": lambda: min(a) if a else None,
                "average": lambda: jnum(sum(a) / len(a)) if a else None,
                "append": lambda: (a if isinstance(a, list) else [a]) + (args[1] if isinstance(args[1], list) else [args[1]]),
                "reverse": lambda: list(reversed(a)),
                "sort": lambda: sorted(a),
                "distinct": lambda: [x for i, x in enumerate(a) if x not in a[:i]],
                "merge": lambda: {k: v for o in a for k, v in o.items()},
                "type": lambda: jtype(a),
                "partition": lambda: [a[i:i + args[1]] for i in range(0, len(a), args[1])],
                "range": lambda: jrange(*args),
                "parse": lambda: json.loads(a),
                "hash": lambda: hashlib.new({"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384",
                                             "SHA-512": "sha512"}[args[1] if len(args) > 1 else "SHA-256"],
                                            a.encode()).hexdigest(),
            }[f]()
        raise Failure("States.Runtime", "JSONata %s %s" % (kind, val))


def jsubstring(s, start, length=None):
    """JSONata's $substring: a negative start counts from the end; characters, not bytes."""
    if start < 0:
        start = max(0, len(s) + start)
    return s[start:] if length is None else s[start:start + max(0, length)]


def jnum(x):
    """A JSON number as JSONata writes it: an integral float is an integer."""
    return int(x) if isinstance(x, float) and x.is_integer() else x


def jtype(v):
    return {bool: "boolean", str: "string", list: "array", dict: "object", type(None): "null"}.get(type(v), "number")


def jrange(start, end, step):
    """Step Functions' $range: from start to end, end included, by step."""
    out, x = [], start
    while (step > 0 and x <= end) or (step < 0 and x >= end):
        out.append(x)
        x += step
    return out


def jsonata_value(t, env):
    if isinstance(t, str):
        s = t.strip()
        if s.startswith("{%") and s.endswith("%}"):
            return JEval(s[2:-2], env).run()
        return t
    if isinstance(t, dict):
        return {k: jsonata_value(v, env) for k, v in t.items()}
    if isinstance(t, list):
        return [jsonata_value(v, env) for v in t]
    return t


# ---- choice rules ------------------------------------------------------------------------------

TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def ts_value(s):
    from datetime import datetime
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def kind_ok(kind, v):
    if kind == "String":
        return isinstance(v, str)
    if kind == "Numeric":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "Boolean":
        return isinstance(v, bool)
    if kind == "Timestamp":
        return isinstance(v, str) and bool(TS.match(v))
    raise AssertionError(kind)


def wildcard(pattern, s):
    rx, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            rx += re.escape(pattern[i + 1])
            i += 2
            continue
        rx += ".*" if c == "*" else re.escape(c)
        i += 1
    return re.fullmatch(rx, s, re.S) is not None


def rule(r, data, ctx):
    if "And" in r:
        return all(rule(x, data, ctx) for x in r["And"])
    if "Or" in r:
        return any(rule(x, data, ctx) for x in r["Or"])
    if "Not" in r:
        return not rule(r["Not"], data, ctx)
    var = r["Variable"]
    try:
        found, v = True, get(var, data, ctx)
    except Failure:
        found, v = False, None
    op = next(k for k in r if k not in ("Variable", "Next", "Comment"))
    operand = r[op]
    if op == "IsPresent":
        return found == operand
    if op == "IsNull":
        return (found and v is None) == operand
    if op in ("IsString", "IsNumeric", "IsBoolean", "IsTimestamp"):
        return (found and kind_ok(op[2:], v)) == operand
    if not found:
        raise Failure("States.Runtime", "the choice rule's Variable %s is not in the input" % var)
    if op == "StringMatches":
        return isinstance(v, str) and wildcard(operand, v)
    m = re.match(r"^(String|Numeric|Boolean|Timestamp)(Equals|LessThan|GreaterThan|LessThanEquals|GreaterThanEquals)(Path)?$", op)
    kind, cmp, by_path = m.group(1), m.group(2), m.group(3)
    other = get(operand, data, ctx) if by_path else operand
    if not (kind_ok(kind, v) and kind_ok(kind, other)):
        return False
    if kind == "Timestamp":
        v, other = ts_value(v), ts_value(other)
    return {
        "Equals": v == other,
        "LessThan": v < other,
        "GreaterThan": v > other,
        "LessThanEquals": v <= other,
        "GreaterThanEquals": v >= other,
    }[cmp]


# ---- the interpreter ---------------------------------------------------------------------------

def matches(names, error):
    return "States.ALL" in names or error in names or ("States.TaskFailed" in names and error != "States.Timeout")


class Machine:
    query_language = "JSONPath"

    def __init__(self, results, name, input_):
        self.results = results
        self.calls = {}
        self.ctx = {"Execution": {"Input": input_}, "StateMachine": {"Name": name}}

    def task_result(self, name):
        n = self.calls.get(name, 0)
        self.calls[name] = n + 1
        entries = self.results[name]
        e = entries[min(n, len(entries) - 1)]
        if "error" in e:
            raise Failure(e["error"], e.get("cause", ""))
        return copy.deepcopy(e["result"])

    def run(self, m, data, extra_ctx=None, scope=None):
        # Variables: a branch or a Map iteration reads the outer ones and assigns its own.
        scope = dict(scope or {})
        state = m["StartAt"]
        while True:
            st = m["States"][state]
            ctx = dict(self.ctx, State={"Name": state}, __vars=scope, **(extra_ctx or {}))
            try:
                self.assigned = {}
                data, nxt = self.step(state, st, data, ctx)
                # Every value of an Assign is computed from the variables before it.
                scope.update(self.assigned)
            except Failure as f:
                catcher = next((c for c in st.get("Catch", []) if matches(c["ErrorEquals"], f.error)), None)
                if catcher is None:
                    raise
                err = {"Error": f.error, "Cause": f.cause}
                if st.get("QueryLanguage", self.query_language) == "JSONata":
                    # JSONata: Assign and Output read $states.errorOutput; the output is the
                    # error output unless Output says otherwise.
                    env = dict(jsonata_env(data, ctx), errorOutput=err)
                    if "Assign" in catcher:
                        scope.update(jsonata_value(catcher["Assign"], env))
                    data = jsonata_value(catcher["Output"], env) if "Output" in catcher else err
                else:
                    # A catcher's Assign reads the error output as `$`.
                    if "Assign" in catcher:
                        scope.update(template(catcher["Assign"], err, ctx))
                    data = result_path("ResultPath" in catcher, catcher.get("ResultPath"), data, err)
                nxt = catcher["Next"]
            if nxt is None:
                return data
            state = nxt

    def with_retry(self, state, st, attempt):
        counts = [0] * len(st.get("Retry", []))
        while True:
            try:
                return attempt()
            except Failure as f:
                i = next((i for i, r in enumerate(st.get("Retry", [])) if matches(r["ErrorEquals"], f.error)), None)
                if i is None or counts[i] >= st["Retry"][i].get("MaxAttempts", 3):
                    raise
                counts[i] += 1

    def step(self, name, st, raw, ctx):
        t = st["Type"]
        nxt = None if st.get("End") else st.get("Next")
        if st.get("QueryLanguage", self.query_language) == "JSONata":
            return self.jsonata_step(name, st, raw, ctx, t, nxt)
        if t == "Pass":
            eff = input_path(st, raw, ctx)
            res = template(st["Parameters"], eff, ctx) if "Parameters" in st else copy.deepcopy(st.get("Result", eff))
            self.assign(st.get("Assign"), res, ctx)
            return output_path(st, result_path("ResultPath" in st, st.get("ResultPath"), raw, res), ctx), nxt
        if t == "Succeed":
            return output_path(st, input_path(st, raw, ctx), ctx), None
        if t == "Fail":
            error = st.get("Error") or (get(st["ErrorPath"], raw, ctx) if "ErrorPath" in st else "States.Fail")
            cause = st.get("Cause") or (get(st["CausePath"], raw, ctx) if "CausePath" in st else "")
            raise Failure(error, cause)
        if t == "Wait":
            self.assign(st.get("Assign"), input_path(st, raw, ctx), ctx)
            return output_path(st, input_path(st, raw, ctx), ctx), nxt
        if t == "Choice":
            eff = input_path(st, raw, ctx)
            for c in st["Choices"]:
                if rule(c, eff, ctx):
                    self.assign(c.get("Assign"), eff, ctx)
                    return output_path(st, eff, ctx), c["Next"]
            if "Default" not in st:
                # The spec leaves the cause open; baton's names the state.
                raise Failure("States.NoChoiceMatched", 'no choice rule of "%s" matched' % name)
            # The state's own Assign is made only when no rule matched.
            self.assign(st.get("Assign"), eff, ctx)
            return output_path(st, eff, ctx), st["Default"]
        eff = input_path(st, raw, ctx)
        if t == "Task":
            template(st.get("Parameters", {}), eff, ctx)  # evaluated, as the service would receive it
            res = self.with_retry(name, st, lambda: self.task_result(name))
        elif t == "Parallel":
            branch_in = template(st["Parameters"], eff, ctx) if "Parameters" in st else eff
            res = [self.run(b, copy.deepcopy(branch_in), scope=ctx["__vars"]) for b in st["Branches"]]
        elif t == "Map":
            items = get(st.get("ItemsPath", "$"), eff, ctx)
            proc = st.get("ItemProcessor") or st["Iterator"]
            sel = st.get("ItemSelector", st.get("Parameters"))
            res = []
            for i, item in enumerate(items):
                mctx = dict(ctx, Map={"Item": {"Index": i, "Value": item}})
                item_in = template(sel, eff, mctx) if sel is not None else item
                res.append(self.run(proc, item_in, scope=ctx["__vars"]))
        else:
            raise Failure("States.Runtime", "type " + t)
        if "ResultSelector" in st:
            res = template(st["ResultSelector"], res, ctx)
        self.assign(st.get("Assign"), res, ctx)
        return output_path(st, result_path("ResultPath" in st, st.get("ResultPath"), raw, res), ctx), nxt


def _assign(self, assign, dollar, ctx, env=None):
    """An Assign: its values from `dollar` (JSONPath's `$`) or `env` (JSONata), all from the
    variables as they were before it."""
    if assign is None:
        return
    if env is not None:
        self.assigned.update(jsonata_value(assign, env))
    else:
        self.assigned.update(template(assign, dollar, ctx))


Machine.assign = _assign


def jsonata_env(raw, ctx, result=None):
    return {"input": raw, "result": result, "context": ctx}


def _jsonata_step(self, name, st, raw, ctx, t, nxt):
    """A JSONata state: Arguments and Output instead of the JSONPath fields."""
    env = jsonata_env(raw, ctx)
    out = lambda default, e=env: jsonata_value(st["Output"], e) if "Output" in st else default
    if t == "Pass":
        self.assign(st.get("Assign"), None, ctx, env)
        return out(raw), nxt
    if t == "Succeed":
        return out(raw), None
    if t == "Fail":
        raise Failure(jsonata_value(st.get("Error", "States.Fail"), env), jsonata_value(st.get("Cause", ""), env))
    if t == "Wait":
        self.assign(st.get("Assign"), None, ctx, env)
        return out(raw), nxt
    if t == "Choice":
        for c in st["Choices"]:
            if jtruthy(jsonata_value(c["Condition"], env)):
                self.assign(c.get("Assign"), None, ctx, env)
                return out(raw), c["Next"]
        if "Default" not in st:
            raise Failure("States.NoChoiceMatched", 'no choice rule of "%s" matched' % name)
        self.assign(st.get("Assign"), None, ctx, env)
        return out(raw), st["Default"]
    if t == "Task":
        jsonata_value(st.get("Arguments", {}), env)
        res = self.with_retry(name, st, lambda: self.task_result(name))
        self.assign(st.get("Assign"), None, ctx, jsonata_env(raw, ctx, res))
        return out(res, jsonata_env(raw, ctx, res)), nxt
    if t == "Parallel":
        branch_in = jsonata_value(st["Arguments"], env) if "Arguments" in st else raw
        res = [self.run(b, copy.deepcopy(branch_in), scope=ctx["__vars"]) for b in st["Branches"]]
        self.assign(st.get("Assign"), None, ctx, jsonata_env(raw, ctx, res))
        return out(res, jsonata_env(raw, ctx, res)), nxt
    if t == "Map":
        # Items defaults to the state's input; ItemSelector sees the item in the context.
        items = jsonata_value(st["Items"], env) if "Items" in st else raw
        proc = st.get("ItemProcessor") or st["Iterator"]
        res = []
        for i, item in enumerate(items):
            mctx = dict(ctx, Map={"Item": {"Index": i, "Value": item}})
            sel = st.get("ItemSelector")
            res.append(self.run(proc, jsonata_value(sel, jsonata_env(raw, mctx)) if sel is not None else item,
                                scope=ctx["__vars"]))
        self.assign(st.get("Assign"), None, ctx, jsonata_env(raw, ctx, res))
        return out(res, jsonata_env(raw, ctx, res)), nxt
    raise Failure("States.Runtime", "JSONata " + t)


Machine.jsonata_step = _jsonata_step


def main():
    definition = json.load(open(sys.argv[1]))
    case = json.load(open(sys.argv[2]))
    m = Machine(case.get("results", {}), sys.argv[3], case["input"])
    m.query_language = definition.get("QueryLanguage", "JSONPath")
    try:
        out = {"status": "succeeded", "output": m.run(definition, copy.deepcopy(case["input"]))}
    except Failure as f:
        out = {"status": "failed", "error": f.error, "cause": f.cause}
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
