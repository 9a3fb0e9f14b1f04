#!/usr/bin/env python3
"""An independent reference of the Amazon States Language's data flow, for the differential test
of `baton import asl` (cli/tests/asl_import.rs). It interprets a definition directly, state by
state, following the States Language specification (https://states-language.net/spec.html):
InputPath -> Parameters -> (task) -> ResultSelector -> ResultPath -> OutputPath, Choice rules,
Parallel, Map, Retry and Catch. Task results come from the case file, by state name.

It shares no code with the converter (which is Rust and emits jq); it is written from the spec.

usage: reference.py DEFINITION.asl.json CASE.json WORKFLOW_NAME
prints {"status": "succeeded", "output": ...} or {"status": "failed", "error": ..., "cause": ...}
"""
import base64
import copy
import json
import re
import sys


class Failure(Exception):
    def __init__(self, error, cause=""):
        super().__init__(error)
        self.error = error
        self.cause = cause


# ---- paths ------------------------------------------------------------------------------------

def parse_path(p):
    """'$.a[0]['b c']' -> ['a', 0, 'b c']"""
    assert p.startswith("$"), p
    rest, out, i = p[1:], [], 0
    while i < len(rest):
        if rest[i] == ".":
            j = i + 1
            while j < len(rest) and rest[j] not in ".[":
                j += 1
            out.append(rest[i + 1:j])
            i = j
        elif rest[i] == "[":
            j = rest.index("]", i)
            inner = rest[i + 1:j].strip()
            if inner[:1] in ("'", '"'):
                out.append(inner[1:-1])
            else:
                out.append(int(inner))
            i = j + 1
        else:
            raise Failure("States.Runtime", "bad path " + p)
    return out


def lookup(value, segs):
    """(found, value)"""
    for s in segs:
        if isinstance(s, int):
            if isinstance(value, list) and 0 <= s < len(value):
                value = value[s]
            else:
                return False, None
        else:
            if isinstance(value, dict) and s in value:
                value = value[s]
            else:
                return False, None
    return True, value


def get(path, data, ctx):
    if path.startswith("$$"):
        found, v = lookup(ctx, parse_path(path[1:]))
    else:
        found, v = lookup(data, parse_path(path))
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
    src = ctx if var.startswith("$$") else data
    found, v = lookup(src, parse_path(var[1:] if var.startswith("$$") else var))
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

    def run(self, m, data, extra_ctx=None):
        state = m["StartAt"]
        while True:
            st = m["States"][state]
            ctx = dict(self.ctx, State={"Name": state}, **(extra_ctx or {}))
            try:
                data, nxt = self.step(state, st, data, ctx)
            except Failure as f:
                catcher = next((c for c in st.get("Catch", []) if matches(c["ErrorEquals"], f.error)), None)
                if catcher is None:
                    raise
                err = {"Error": f.error, "Cause": f.cause}
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
        if t == "Pass":
            eff = input_path(st, raw, ctx)
            res = template(st["Parameters"], eff, ctx) if "Parameters" in st else copy.deepcopy(st.get("Result", eff))
            return output_path(st, result_path("ResultPath" in st, st.get("ResultPath"), raw, res), ctx), nxt
        if t == "Succeed":
            return output_path(st, input_path(st, raw, ctx), ctx), None
        if t == "Fail":
            error = st.get("Error") or (get(st["ErrorPath"], raw, ctx) if "ErrorPath" in st else "States.Fail")
            cause = st.get("Cause") or (get(st["CausePath"], raw, ctx) if "CausePath" in st else "")
            raise Failure(error, cause)
        if t == "Wait":
            return output_path(st, input_path(st, raw, ctx), ctx), nxt
        if t == "Choice":
            eff = input_path(st, raw, ctx)
            for c in st["Choices"]:
                if rule(c, eff, ctx):
                    return output_path(st, eff, ctx), c["Next"]
            if "Default" not in st:
                # The spec leaves the cause open; baton's names the state.
                raise Failure("States.NoChoiceMatched", 'no choice rule of "%s" matched' % name)
            return output_path(st, eff, ctx), st["Default"]
        eff = input_path(st, raw, ctx)
        if t == "Task":
            template(st.get("Parameters", {}), eff, ctx)  # evaluated, as the service would receive it
            res = self.with_retry(name, st, lambda: self.task_result(name))
        elif t == "Parallel":
            branch_in = template(st["Parameters"], eff, ctx) if "Parameters" in st else eff
            res = [self.run(b, copy.deepcopy(branch_in)) for b in st["Branches"]]
        elif t == "Map":
            items = get(st.get("ItemsPath", "$"), eff, ctx)
            proc = st.get("ItemProcessor") or st["Iterator"]
            sel = st.get("ItemSelector", st.get("Parameters"))
            res = []
            for i, item in enumerate(items):
                mctx = dict(ctx, Map={"Item": {"Index": i, "Value": item}})
                item_in = template(sel, eff, mctx) if sel is not None else item
                res.append(self.run(proc, item_in))
        else:
            raise Failure("States.Runtime", "type " + t)
        if "ResultSelector" in st:
            res = template(st["ResultSelector"], res, ctx)
        return output_path(st, result_path("ResultPath" in st, st.get("ResultPath"), raw, res), ctx), nxt


def main():
    definition = json.load(open(sys.argv[1]))
    case = json.load(open(sys.argv[2]))
    m = Machine(case.get("results", {}), sys.argv[3], case["input"])
    try:
        out = {"status": "succeeded", "output": m.run(definition, copy.deepcopy(case["input"]))}
    except Failure as f:
        out = {"status": "failed", "error": f.error, "cause": f.cause}
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
