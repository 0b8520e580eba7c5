"""A seeded random SQL generator that looks for wrong answers, in the spirit
of SQLancer and sqlsmith: queries drawn from the SQL the README documents
run on Keel (through Flight SQL) and on DuckDB, and every difference is
reported with its query, reduced to a smaller one that still differs.

Layout:
- `write_data(dir, rows)`: t1 and t2 as Parquet, written by DuckDB from
  integer hashes of the row number (the same bytes on every machine).
- `N`, `Seq`: the query as a tree of SQL pieces, so the reducer can drop a
  clause, a conjunct or a select item, or replace an expression by one of
  its operands, and print the query again.
- `Gen`: typed expressions and queries from a `random.Random(seed)`.
- `Keel`, `Duck`: run one query, with a timeout, into rows or an error.
- `compare`, `check`: the answers as multisets (or in order, for ORDER BY
  with LIMIT over every column), floats within a tolerance.
- `reduce`: greedy shrinking while the difference persists.
- `run_many`: seeds in, outcomes counted, differences listed.

`KNOWN` names wrong answers being fixed: the generator avoids each feature
listed there, so a CI run passes until the fix lands; empty it as fixes land.
"""

import dataclasses
import datetime
import decimal
import math
import random
import re
import threading
import time
from pathlib import Path

# Features the generator avoids while a known wrong answer is being fixed.
KNOWN = set()

INT, FLT, STR, BOOL, DATE, TS = "int", "float", "str", "bool", "date", "ts"
TYPES = (INT, FLT, STR, BOOL, DATE, TS)
CAST_NAME = {INT: "BIGINT", FLT: "DOUBLE", STR: "VARCHAR", BOOL: "BOOLEAN", DATE: "DATE", TS: "TIMESTAMP"}
INT32 = 2**31 - 1
WORDS = ["apple", "Banana", "cherry", "date", "elder berry", "fig", "grape", "hönig", "kiwi_fruit", "LEMON"]

# ---------------------------------------------------------------------------------------------
# Data


def _uniform(salt):
    """A uniform value in [0, 1) from the row number `i`: an integer hash
    (every product stays below 2^63, so it is the same on every machine)."""
    h = f"((i * 2654435761 + {salt * 40503 + 12345}) % 2147483647)"
    h = f"xor({h}, {h} >> 13)"
    h = f"(({h}) * 1103515245 + 12345) % 2147483648"
    h = f"xor({h}, ({h}) >> 16)"
    h = f"(({h}) * 2246822519) % 2147483648"
    h = f"xor({h}, ({h}) >> 13)"
    return f"(({h}) / 2147483648.0)"


def write_data(dir, rows=200_000, files=4):
    """t1 (`rows` rows) and t2 (3,000 rows) under `dir`/t1 and `dir`/t2, in
    several files of several row groups each."""
    import duckdb

    dir = Path(dir)
    con = duckdb.connect()
    words = "[" + ", ".join(f"'{w}'" for w in WORDS) + "]"
    u = _uniform
    con.execute(f"""
        CREATE TABLE t1 AS SELECT
          i::BIGINT AS id,
          least(500, floor(exp({u(1)} * ln(501.0))))::BIGINT AS k,
          floor({u(2)} * 7)::INTEGER AS g,
          CASE WHEN {u(3)} < 0.05 THEN NULL ELSE {words}[1 + floor({u(4)} * 10)::INTEGER] END AS s,
          CASE WHEN {u(5)} < 0.10 THEN NULL
               WHEN {u(5)} < 0.105 THEN 0.0::DOUBLE
               ELSE round(10 + 5 * sqrt(-2 * ln(1 - {u(6)})) * cos(2 * pi() * {u(7)}), 3) + 0.0::DOUBLE END AS x,
          CASE WHEN {u(8)} < 0.02 THEN NULL ELSE floor({u(9)} * 100)::BIGINT - 50 END AS q,
          DATE '2020-01-01' + floor({u(10)} * 2200)::INTEGER AS d,
          TIMESTAMP '2019-06-01 00:00:00' + to_milliseconds(floor({u(11)} * 2200 * 86400 * 1000)::BIGINT) AS ts,
          CASE WHEN {u(12)} < 0.05 THEN NULL ELSE {u(13)} < 0.5 END AS b
        FROM range({rows}) r(i)
    """)
    con.execute(f"""
        CREATE TABLE t2 AS SELECT
          (1 + floor({u(21)} * 599))::BIGINT AS k,
          {words}[1 + floor({u(22)} * 10)::INTEGER] || '_' || i AS name,
          CASE WHEN {u(23)} < 0.05 THEN NULL ELSE floor({u(24)} * 10000) / 10000.0 END::DOUBLE AS w
        FROM range(3000) r(i)
    """)
    for name, n in (("t1", rows), ("t2", 3000)):
        (dir / name).mkdir(parents=True, exist_ok=True)
        group = max(64, n // (files * 4))
        for j in range(files):
            con.execute(f"COPY (SELECT * FROM {name} WHERE hash(rowid) % {files} = {j}) "
                        f"TO '{dir}/{name}/part-{j}.parquet' (FORMAT parquet, ROW_GROUP_SIZE {group})")
    con.close()


# ---------------------------------------------------------------------------------------------
# The query tree


class N:
    """A piece of SQL: `fmt` formatted with the SQL of its kids. An
    expression has its type `t`; `fuzzy` marks a value that may differ in
    the last bits between engines (sums and averages of doubles,
    transcendental functions), which nothing discontinuous may consume.
    `opt` marks a clause the reducer may drop."""

    __slots__ = ("fmt", "kids", "t", "fuzzy", "opt", "bound")

    def __init__(self, fmt, kids=(), t=None, fuzzy=False, opt=False):
        self.fmt, self.kids, self.t, self.fuzzy, self.opt = fmt, list(kids), t, fuzzy, opt
        self.bound = 1e18  # |value| at most, for numbers: keeps products from overflowing

    def sql(self):
        return self.fmt.format(*[k.sql() if isinstance(k, N) else k for k in self.kids])

    def with_kids(self, kids):
        n = N(self.fmt, kids, self.t, self.fuzzy, self.opt)
        n.bound = self.bound
        return n


class Seq(N):
    """Items joined by `sep`; the reducer may drop items down to `keep`."""

    __slots__ = ("sep", "keep")

    def __init__(self, sep, items, keep=1):
        super().__init__(None, items)
        self.sep, self.keep = sep, keep

    def sql(self):
        return self.sep.join(k.sql() if isinstance(k, N) else k for k in self.kids)

    def with_kids(self, kids):
        return Seq(self.sep, kids, self.keep)


class OrderAll(N):
    """ORDER BY every output column of `select` (a Seq), by position, so the
    order is total; then LIMIT."""

    __slots__ = ("select", "dirs", "limit")

    def __init__(self, select, dirs, limit):
        super().__init__(None, [], opt=True)
        self.select, self.dirs, self.limit = select, dirs, limit

    def sql(self):
        n = len(self.select.kids)
        keys = ", ".join(f"{i + 1}{self.dirs[i % len(self.dirs)]}" for i in range(n))
        return f" ORDER BY {keys}" + (f" LIMIT {self.limit}" if self.limit is not None else "")

    def with_kids(self, kids):
        return self


EMPTY = N("")


def _has_col(e):
    return re.search(r"\br\d+\.", e.sql()) is not None


def lit(text, t):
    return N(text, t=t)


# ---------------------------------------------------------------------------------------------
# The generator


@dataclasses.dataclass
class Col:
    ref: str  # as written in the query: alias.name
    t: str
    bound: float = 1e18  # |value| at most (numbers), to keep products from overflowing
    ndv: float = 1e9  # distinct values, to keep joins small
    fuzzy: bool = False


@dataclasses.dataclass
class Rel:
    sql: str  # FROM item text, with its alias
    cols: list
    rows: float
    order_key: list = dataclasses.field(default_factory=list)  # columns that make a total order
    subquery: bool = False


T1 = [("id", INT, None, None), ("k", INT, 500, 45), ("g", INT, 6, 7), ("s", STR, None, 10), ("x", FLT, 40, 30000),
      ("q", INT, 50, 100), ("d", DATE, None, 2200), ("ts", TS, None, None), ("b", BOOL, None, 2)]
T2 = [("k", INT, 599, 599), ("name", STR, None, 3000), ("w", FLT, 1, 10000)]

INT_LITS = [0, 1, -1, 2, 3, 5, 7, 10, 42, -50, 49, 100, 499, 500, 1000]
BIG_INT_LITS = [2147483647, -2147483648, 9223372036854775807, -9223372036854775807, 4294967296]
FLT_LITS = [0.0, 0.5, 1.5, 2.25, 9.85, 10.0, -3.75, 0.001, 0.1, 12.345, 1e-10, -0.5, 100.0, 2.5]
STR_LITS = ["apple", "Banana", "", "a", "zz", "hönig", "it's", "%", "e", "elder berry", "LEMON", "kiwi_fruit"]
DATE_LITS = ["2020-02-29", "2021-01-01", "2023-06-15", "1970-01-01", "2025-12-31", "2022-03-27", "2024-02-29"]
TS_LITS = ["2021-03-14 01:59:26", "2020-01-01 00:00:00", "2022-12-31 23:59:59.999", "1969-12-31 23:59:59",
           "2024-02-29 12:00:00"]
LIKE_PATTERNS = ["a%", "%e%", "_i%", "%", "", "apple", "%_%", "B%", "%n_", "%\\_%", "%a%a%", "h_nig", "%berry"]
DATE_PARTS = ["year", "quarter", "month", "week", "day", "dow", "isodow", "doy"]
TS_PARTS = DATE_PARTS + ["hour", "minute", "second"]
TRUNC_PARTS = ["year", "quarter", "month", "week", "day", "hour", "minute"]
INTERVALS = ["INTERVAL 3 DAY", "INTERVAL '90 minutes'", "INTERVAL '1 year 2 months'", "INTERVAL 1 MONTH",
             "INTERVAL 36 HOUR", "INTERVAL '-1 day'"]


class Gen:
    """Random typed expressions and queries from one seed."""

    def __init__(self, seed, rows=200_000, known=None):
        self.r = random.Random(seed)
        self.rows = rows
        self.known = KNOWN if known is None else set(known)
        self.names = 0
        self.ctes = []  # (name, Rel) visible to FROM items of the current statement
        self.fuzzy_query = False

    # -- helpers -------------------------------------------------------------------------------

    def chance(self, p):
        return self.r.random() < p

    def pick(self, seq):
        return self.r.choice(seq)

    def fresh(self, prefix):
        self.names += 1
        return f"{prefix}{self.names}"

    # -- literals ------------------------------------------------------------------------------

    def literal(self, t, small=False):
        r = self.r
        if self.chance(0.06):
            bare = t in (INT, BOOL) and self.chance(0.3) and not (t == BOOL and "case_when_null" in self.known)
            return lit("NULL" if bare else f"CAST(NULL AS {CAST_NAME[t]})", t)
        if t == INT:
            v = self.pick(INT_LITS if small or self.chance(0.9) else BIG_INT_LITS)
            n = lit(f"({v})" if v < 0 else str(v), INT)
            n.bound = abs(v)
            return n
        if t == FLT:
            if "negzero" not in self.known and self.chance(0.1):
                return lit(self.pick(["(-0.0::DOUBLE)", "CAST('-0.0' AS DOUBLE)"]), FLT)
            v = self.pick(FLT_LITS) * (-1 if self.chance(0.2) else 1)
            if v == 0 and "negzero" in self.known:
                v = 0.0
            text = repr(v)
            return lit(f"({text}::DOUBLE)" if text.startswith("-") else f"{text}::DOUBLE", FLT)
        if t == STR:
            return lit("'" + self.pick(STR_LITS).replace("'", "''") + "'", STR)
        if t == BOOL:
            return lit(self.pick(["TRUE", "FALSE"]), BOOL)
        if t == DATE:
            return lit(f"DATE '{self.pick(DATE_LITS)}'", DATE)
        return lit(f"TIMESTAMP '{self.pick(TS_LITS)}'", TS)

    # -- expressions ---------------------------------------------------------------------------

    def expr(self, t, cols, depth=2, aggs=None, fuzzy_ok=False):
        """An expression of type `t` over `cols`. With `aggs` (a list of the
        group's columns), aggregates appear and bare columns only from the
        group's keys. `fuzzy_ok` lets sums and averages of doubles in."""
        e = self._expr(t, cols, depth, aggs, fuzzy_ok)
        if "constant_subexpression" in self.known and e.kids and not re.search(r"\br\d+\.|count\(\*\)", e.sql()):
            return self.literal(t)
        return e

    def _leaf(self, t, cols, aggs, fuzzy_ok=False):
        pool = [c for c in (aggs if aggs is not None else cols) if c.t == t and (fuzzy_ok or not c.fuzzy)]
        if pool and self.chance(0.8):
            c = self.pick(pool)
            n = N(c.ref, t=t, fuzzy=c.fuzzy)
            n.bound = c.bound
            return n
        return self.literal(t)

    def _expr(self, t, cols, depth, aggs, fuzzy_ok):
        if aggs is not None and depth > 0 and self.chance(0.55):
            a = self.aggregate(t, cols, fuzzy_ok)
            if a is not None:
                return a
        if depth <= 0 or self.chance(0.25):
            return self._leaf(t, cols, aggs, fuzzy_ok)
        sub = lambda tt, d=depth - 1, f=fuzzy_ok: self.expr(tt, cols, d, aggs, f)
        self._scope = aggs if aggs is not None else cols  # for _generic, which has no `cols`
        return getattr(self, f"_{t}")(sub, depth, fuzzy_ok)

    def _generic(self, t, sub):
        """Forms every type has: CASE, coalesce, nullif, greatest/least."""
        k = self.r.randrange(5)
        if k == 0:
            whens = " ".join(f"WHEN {{{2 * i}}} THEN {{{2 * i + 1}}}" for i in range(self.r.randint(1, 2)))
            nw = whens.count("WHEN")
            kids = []
            for _ in range(nw):
                kids += [sub(BOOL, f=False), sub(t)]
            if self.chance(0.7):
                kids.append(sub(t))
                return N(f"CASE {whens} ELSE {{{2 * nw}}} END", kids, t, any(k.fuzzy for k in kids))
            return N(f"CASE {whens} END", kids, t, any(k.fuzzy for k in kids))
        if k == 1:
            ot = self.pick([INT, STR, INT, DATE])
            n = self.r.randint(1, 3)
            kids = [sub(ot, f=False)]
            if "case_constant_operand" in self.known and not re.search(r"\br\d+\.", kids[0].sql()):
                pool = [c for c in self._scope if c.t == ot and not c.fuzzy]
                if not pool:
                    return self._generic(t, sub) if self.chance(0.5) else sub(t)
                kids[0] = N(self.pick(pool).ref, t=ot)
            parts = []
            for i in range(n):
                kids += [self.literal(ot, small=True), sub(t)]
                parts.append(f"WHEN {{{2 * i + 1}}} THEN {{{2 * i + 2}}}")
            kids.append(sub(t))
            return N(f"CASE {{0}} {' '.join(parts)} ELSE {{{2 * n + 1}}} END", kids, t, any(k.fuzzy for k in kids))
        if k == 2:
            kids = [sub(t) for _ in range(self.r.randint(2, 3))]
            return N("coalesce(" + ", ".join(f"{{{i}}}" for i in range(len(kids))) + ")", kids, t,
                     any(k.fuzzy for k in kids))
        if k == 3:
            a, b = self.key(sub(t)), self.key(sub(t, f=False))
            return N("nullif({0}, {1})", [a, b], t, a.fuzzy or b.fuzzy)
        a, b = sub(t), sub(t)
        return N(self.pick(["greatest", "least"]) + "({0}, {1})", [a, b], t, a.fuzzy or b.fuzzy)

    def _int(self, sub, depth, fuzzy_ok):
        k = self.r.randrange(16)
        if k < 4:
            a, b = sub(INT), sub(INT)
            op = self.pick(["+", "-", "*"])
            if op == "*" and a.bound * b.bound > INT32 // 4:
                op = "+"
            if a.bound + b.bound > 2**62:
                a, b = (self.literal(INT, small=True) if x.bound > 2**61 else x for x in (a, b))
            n = N(f"({{0}} {op} {{1}})", [a, b], INT)
            n.bound = a.bound * b.bound if op == "*" else a.bound + b.bound
            return n
        if k == 4:
            a = sub(INT)
            m = self.pick([2, 3, 7, 10, -4])
            n = N(f"({{0}} % {m if m > 0 else f'({m})'})", [a], INT)
            n.bound = abs(m)
            return n
        if k == 5:
            a = sub(INT)
            n = N(self.pick(["(-{0})", "abs({0})", "sign({0})"]), [a], INT)
            n.bound = a.bound
            return n
        if k == 6:
            n = N(self.pick(["length({0})", "strpos({0}, 'e')", "instr({0}, 'an')"]),
                  [sub(STR)], INT)
            n.bound = 100
            return n
        if k == 7:
            src = self.pick([DATE, TS])
            part = self.pick(DATE_PARTS if src == DATE else TS_PARTS)
            fmt = self.pick([f"date_part('{part}', {{0}})", f"extract({part} FROM {{0}})"])
            n = N(fmt, [sub(src)], INT)
            n.bound = 3000
            return n
        if k == 8:
            part = self.pick(["day", "month", "year", "week", "hour"])
            n = N(f"date_diff('{part}', {{0}}, {{1}})", [sub(DATE), sub(DATE)], INT)
            n.bound = 1e6
            return n
        if k == 9:
            a = sub(FLT, f=False)
            if a.bound < 1e8:
                n = N(self.pick(["CAST({0} AS BIGINT)", "CAST({0} AS INTEGER)", "{0}::BIGINT"]), [a], INT)
                n.bound = a.bound + 1
                return n
        if k == 10:
            n = N(self.pick(["TRY_CAST({0} AS BIGINT)", "TRY_CAST({0} AS INTEGER)"]), [sub(STR)], INT)
            n.bound = INT32
            return n
        if k == 11 and self.chance(0.3):
            n = N("CAST({0} AS INTEGER)", [sub(BOOL, f=False)], INT)
            n.bound = 1
            return n
        if k == 12 and self.chance(0.3):
            n = N(self.pick(["epoch_ms({0})", "epoch_us({0})"]), [sub(TS)], INT)
            n.bound = 1e16
            return n
        n = self._generic(INT, sub)
        n.bound = max(getattr(k, "bound", 1e18) for k in n.kids if isinstance(k, N) and k.t == INT) \
            if any(isinstance(k, N) and k.t == INT for k in n.kids) else 1e18
        return n

    def _float(self, sub, depth, fuzzy_ok):
        k = self.r.randrange(16)
        if k < 4:
            a, b = sub(self.pick([FLT, FLT, INT])), sub(FLT)
            if self.chance(0.5):
                a, b = b, a
            op = self.pick(["+", "-", "*"])
            if op == "*" and a.bound * b.bound > 1e12:
                op = "-"
            n = N(f"({{0}} {op} {{1}})", [a, b], FLT, a.fuzzy or b.fuzzy)
            n.bound = a.bound * b.bound if op == "*" else a.bound + b.bound
            return n
        if k == 4:
            a = sub(self.pick([FLT, INT]))
            if self.chance(0.5):
                d = self.pick([2, 3, 7, 0.5, -4, 1000])
                n = N(f"({{0}} / {d if d > 0 else f'({d})'})", [a], FLT, a.fuzzy)
                n.bound = a.bound * 2
            else:
                n = N("({0} / nullif({1}, 0))", [a, sub(INT, f=False)], FLT, a.fuzzy)
                n.bound = a.bound
            return n
        if k == 5:
            a = sub(FLT)
            n = N(self.pick(["(-{0})", "abs({0})"]), [a], FLT, a.fuzzy)
            n.bound = a.bound
            return n
        if k == 6:
            a = sub(FLT, f=False)
            forms = ["round({0})", "floor({0})", "ceil({0})", "ceiling({0})"]
            if "round_digits" not in self.known:
                forms += [f"round({{0}}, {self.pick([0, 1, 2, 3, -1])})"] * 2
            n = N(self.pick(forms), [a], FLT)
            n.bound = a.bound + 10
            return n
        if k == 7 and fuzzy_ok:
            a = sub(FLT)
            f = self.pick(["sqrt(abs({0}))", "cbrt({0})", "ln(abs({0}) + 1)", "log10(abs({0}) + 1)",
                           "log2(abs({0}) + 1)", "power({0}, 2)", "exp({0} / 1000000)", "pi() * {0}"])
            if "power" in f and a.bound > 1e6:
                f = "sqrt(abs({0}))"
            n = N(f, [a], FLT, True)
            n.bound = a.bound * a.bound if "power" in f else a.bound * 4 + 4
            return n
        if k == 8:
            a = sub(INT)
            n = N(self.pick(["CAST({0} AS DOUBLE)", "{0}::DOUBLE"]), [a], FLT)
            n.bound = a.bound
            return n
        if k == 9 and self.chance(0.3):
            n = N("date_part('epoch', {0})", [sub(TS)], FLT)
            n.bound = 3e9
            return n
        if k == 10 and self.chance(0.3):
            n = N("TRY_CAST({0} AS DOUBLE)", [sub(STR)], FLT)
            n.bound = 1e18
            return n
        n = self._generic(FLT, sub)
        fl = [k for k in n.kids if isinstance(k, N) and k.t == FLT]
        n.bound = max((getattr(k, "bound", 1e18) for k in fl), default=1e18)
        return n

    def _str(self, sub, depth, fuzzy_ok):
        k = self.r.randrange(14)
        if k < 2:
            f = self.pick(["upper({0})", "lower({0})", "trim({0})", "ltrim({0})", "rtrim({0})", "reverse({0})",
                           f"substr({{0}}, {self.pick([-3, -1, 0, 1, 2, 5])}, {self.pick([0, 1, 3, 10])})",
                           f"substring({{0}}, {self.pick([1, 2, 4])})",
                           f"SUBSTRING({{0}} FROM {self.pick([1, 2])} FOR {self.pick([1, 3])})",
                           f"left({{0}}, {self.pick([0, 1, 3, -2])})", f"right({{0}}, {self.pick([0, 2, -1])})",
                           "replace({0}, 'a', 'xy')", "replace({0}, 'e', '')", f"lpad({{0}}, {self.pick([0, 3, 8])}, '*')",
                           f"rpad({{0}}, {self.pick([2, 8])}, '-')", "split_part({0}, ' ', 1)",
                           "split_part({0}, '_', 2)", "repeat({0}, 2)", "regexp_replace({0}, '[aeiou]', '*', 'g')",
                           "regexp_extract({0}, '[a-z]+')", "TRIM(BOTH 'a' FROM {0})", "TRIM(LEADING 'B' FROM {0})"])
            return N(f, [sub(STR)], STR)
        if k < 4:
            return N(self.pick(["({0} || {1})", "concat({0}, {1})", "concat_ws('-', {0}, {1})"]),
                     [sub(STR), sub(STR)], STR)
        if k == 4:
            return N("CAST({0} AS VARCHAR)", [sub(INT)], STR)
        if k == 5:
            return N(self.pick(["CAST({0} AS VARCHAR)", "strftime({0}, '%Y-%m-%d')", "strftime({0}, '%d/%m/%Y')"]),
                     [sub(DATE)], STR)
        if k == 6 and self.chance(0.4):
            return N("CAST({0} AS VARCHAR)", [sub(FLT, f=False)], STR)
        if k == 7 and self.chance(0.4):
            forms = ["strftime({0}, '%Y-%m-%d %H:%M')"]
            if "timestamp_to_varchar" not in self.known:
                forms.append("CAST({0} AS VARCHAR)")
            return N(self.pick(forms), [sub(TS)], STR)
        if k == 8 and self.chance(0.3):
            return N("CAST({0} AS VARCHAR)", [sub(BOOL, f=False)], STR)
        return self._generic(STR, sub)

    def _bool(self, sub, depth, fuzzy_ok):
        k = self.r.randrange(18)
        if k < 4:
            t = self.pick([INT, INT, FLT, STR, DATE, TS])
            a, b = sub(t, f=False), sub(t, f=False)
            if t == INT and self.chance(0.3):
                b = sub(FLT, f=False)
            a, b = self.key(a), self.key(b)  # -0.0 compares below 0.0 as well
            if "constant_subexpression" in self.known and not _has_col(a):
                a, b = b, a  # `7 NOT BETWEEN 499 AND k` fails, `1 < k` may too
            return N(f"({{0}} {self.pick(['=', '<>', '<', '<=', '>', '>=', '!='])} {{1}})", [a, b], BOOL)
        if k < 6:
            return N(f"({{0}} {self.pick(['AND', 'OR'])} {{1}})", [sub(BOOL), sub(BOOL)], BOOL)
        if k == 6:
            return N("(NOT {0})", [sub(BOOL)], BOOL)
        if k == 7:
            return N(self.pick(["({0} IS NULL)", "({0} IS NOT NULL)"]), [sub(self.pick(TYPES), f=False)], BOOL)
        if k == 8:
            t = self.pick([INT, FLT, STR, DATE, BOOL])
            return N(self.pick(["({0} IS DISTINCT FROM {1})", "({0} IS NOT DISTINCT FROM {1})"]),
                     [sub(t, f=False), sub(t, f=False)], BOOL)
        if k == 9:
            t = self.pick([INT, FLT, STR, DATE])
            a = self.key(sub(t, f=False))
            if "constant_subexpression" in self.known and not _has_col(a):
                return self.literal(BOOL)
            return N(self.pick(["({0} BETWEEN {1} AND {2})", "({0} NOT BETWEEN {1} AND {2})"]),
                     [a, self.key(sub(t, f=False)), self.key(sub(t, f=False))], BOOL)
        if k == 10:
            t = self.pick([INT, FLT, STR, DATE])
            n = self.r.randint(1, 4)
            items = [self.key(self.literal(t)) for _ in range(n)]
            return N(f"({{0}} {self.pick(['IN', 'NOT IN'])} (" + ", ".join(f"{{{i + 1}}}" for i in range(n)) + "))",
                     [self.key(sub(t, f=False))] + items, BOOL)
        if k == 11:
            p = self.pick(LIKE_PATTERNS).replace("'", "''")
            return N(f"({{0}} {self.pick(['LIKE', 'NOT LIKE', 'ILIKE', 'NOT ILIKE'])} '{p}')", [sub(STR)], BOOL)
        if k == 12:
            arg = self.pick(["'a'", "'e'", "'Ba'", "''", "'berry'"])
            return N(self.pick([f"starts_with({{0}}, {arg})", f"ends_with({{0}}, {arg})", f"contains({{0}}, {arg})",
                                "regexp_matches({0}, '^[a-f]')", "regexp_matches({0}, 'E', 'i')"]), [sub(STR)], BOOL)
        return self._generic(BOOL, sub)

    def _date(self, sub, depth, fuzzy_ok):
        k = self.r.randrange(6)
        if k == 0:
            return N("CAST({0} AS DATE)", [sub(TS)], DATE)
        if k == 1:
            return N(f"CAST('{self.pick(DATE_LITS)}' AS DATE)", [], DATE)
        if k == 2 and self.chance(0.5):
            return N("make_date(CAST(2020 + ({0} % 5) AS BIGINT), CAST(1 + abs({1} % 12) AS BIGINT), "
                     "CAST(1 + abs({2} % 28) AS BIGINT))",
                     [sub(INT, f=False), sub(INT, f=False), sub(INT, f=False)], DATE)
        return self._generic(DATE, sub)

    def _ts(self, sub, depth, fuzzy_ok):
        k = self.r.randrange(7)
        if k < 2:
            return N(f"({{0}} {self.pick(['+', '-'])} {self.pick(INTERVALS)})", [sub(self.pick([DATE, TS]))], TS)
        if k == 2:
            return N(f"date_trunc('{self.pick(TRUNC_PARTS)}', {{0}})", [sub(self.pick([DATE, TS]))], TS)
        if k == 3:
            return N("CAST({0} AS TIMESTAMP)", [sub(DATE)], TS)
        if k == 4 and self.chance(0.4):
            return N("to_timestamp({0})", [sub(INT, f=False)], TS)
        return self._generic(TS, sub)

    def key(self, e):
        """`e` as a hash key: with -0.0 a known issue, floats pass through + 0.0."""
        if e.t == FLT and "negzero" in self.known:
            n = N("({0} + 0.0)", [e], FLT, e.fuzzy)
            n.bound = getattr(e, "bound", 1e18)
            return n
        return e

    # -- aggregates ----------------------------------------------------------------------------

    def aggregate(self, t, cols, fuzzy_ok):
        """An aggregate call of result type `t` over row-level `cols`."""
        sub = lambda tt, f=False: self.expr(tt, cols, 1, None, f)
        filt = ""
        kids = []
        if self.chance(0.2):
            kids.append(sub(BOOL))
            filt = " FILTER (WHERE {%d})"
        if t == INT:
            k = self.r.randrange(6)
            if k == 0:
                n = N("count(*)" + (filt % 0 if filt else ""), kids, INT)
            elif k == 1:
                n = N("count({0})" + (filt % 1 if filt else ""), [self.expr(self.pick(TYPES), cols, 1)] + kids, INT)
            elif k == 2:
                arg = self.key(self.expr(self.pick([INT, STR, FLT, DATE]), cols, 1))
                n = N("count(DISTINCT {0})" + (filt % 1 if filt else ""), [arg] + kids, INT)
            elif k == 3:
                arg = sub(INT)
                if arg.bound * self.rows > 9e18:
                    return None
                d = "DISTINCT " if self.chance(0.2) else ""
                n = N(f"sum({d}{{0}})" + (filt % 1 if filt else ""), [arg] + kids, INT)
            else:
                f = self.pick(["min", "max"])
                n = N(f + "({0})" + (filt % 1 if filt else ""), [sub(INT)] + kids, INT)
            n.bound = 1e18
            return n
        if t == FLT:
            k = self.r.randrange(4)
            if k == 0:
                arg = sub(INT)
                n = N("avg({0})" + (filt % 1 if filt else ""), [arg] + kids, FLT)
            elif k == 1 and fuzzy_ok:
                f = self.pick(["sum", "avg"])
                n = N(f + "({0})" + (filt % 1 if filt else ""), [sub(FLT)] + kids, FLT, True)
                self.fuzzy_query = True
            else:
                n = N(self.pick(["min", "max"]) + "({0})" + (filt % 1 if filt else ""), [sub(FLT)] + kids, FLT)
            n.bound = 1e18
            return n
        if t in (STR, DATE, TS):
            return N(self.pick(["min", "max"]) + "({0})" + (filt % 1 if filt else ""), [sub(t)] + kids, t)
        if t == BOOL and self.chance(0.2):
            return N(self.pick(["min", "max"]) + "({0})" + (filt % 1 if filt else ""), [sub(BOOL)] + kids, BOOL)
        return None

    # -- FROM items ----------------------------------------------------------------------------

    def base(self, name, target):
        """t1 or t2 as a FROM item, t1 sampled by id to about `target` rows."""
        alias = self.fresh("r")
        spec = T1 if name == "t1" else T2
        rows = self.rows if name == "t1" else 3000
        text = f"{name} AS {alias}"
        if name == "t1" and rows > target:
            p = max(2, int(rows // max(target, 1)))
            text = f"(SELECT * FROM t1 WHERE id % {p} = {self.r.randrange(p)}) AS {alias}"
            rows = rows / p
        elif name == "t2" and rows > target:
            text = f"(SELECT * FROM t2 WHERE k <= {max(1, int(599 * target / 3000))}) AS {alias}"
            rows = target
        cols = []
        for c, t, bound, ndv in spec:
            if c == "id":
                bound, ndv = self.rows, rows
            cols.append(Col(f"{alias}.{c}", t, bound if bound is not None else 1e18, ndv if ndv else rows))
        key = [f"{alias}.id"] if name == "t1" else [f"{alias}.name"]
        return Rel(text, cols, rows, key, subquery=text.startswith("("))

    def derived(self, target, depth):
        """A subquery in FROM (or a CTE) as a relation."""
        q, outs, rows = self.select(depth - 1, target, want_cols=None)
        alias = self.fresh("r")
        if self.ctes is not None and self.chance(0.35):
            name = self.fresh("w")
            self.ctes.append((name, q))
            text = f"{name} AS {alias}"
        else:
            text = N("({0}) AS " + alias, [q])
        cols = [Col(f"{alias}.{a}", t, b, min(rows, ndv), f) for a, t, b, ndv, f in outs]
        return Rel(text, cols, rows, [c.ref for c in cols], subquery=True)

    def from_item(self, depth, target, allow_join=True):
        k = self.r.random()
        if depth > 0 and k < 0.2:
            return self.derived(target, depth)
        if allow_join and k < 0.55:
            return self.join(depth, target)
        name = "t1" if self.chance(0.75) else "t2"
        return self.base(name, target)

    def join(self, depth, target):
        kind = self.pick(["JOIN", "JOIN", "INNER JOIN", "LEFT JOIN", "LEFT OUTER JOIN", "RIGHT JOIN", "FULL JOIN",
                          "FULL OUTER JOIN"])
        side_target = max(50, min(target, 3000))
        left = self.from_item(depth - 1, side_target, allow_join=depth > 1) if depth > 1 and self.chance(0.3) \
            else self.base(self.pick(["t1", "t1", "t2"]), side_target)
        right = self.derived(side_target, depth) if depth > 0 and self.chance(0.25) \
            else self.base(self.pick(["t1", "t2", "t2"]), side_target)
        # Equality keys of one type on both sides, the one with the most distinct values preferred.
        pairs = [(a, b) for a in left.cols for b in right.cols if a.t == b.t and a.t in (INT, FLT, STR, DATE, BOOL)
                 and not a.fuzzy and not b.fuzzy]
        if not pairs:
            return left
        pairs.sort(key=lambda p: -min(p[0].ndv, p[1].ndv))
        est = lambda p: left.rows * right.rows / max(1.0, min(p[0].ndv, p[1].ndv) if p[0].t != BOOL else 2)
        ok = [p for p in pairs if est(p) <= 60000]
        a, b = self.pick(ok[:6]) if ok else pairs[0]
        conds = [self.join_key(a, b)]
        if self.chance(0.2):
            more = [p for p in pairs if p != (a, b)]
            if more:
                conds.append(self.join_key(*self.pick(more)))
        cols = left.cols + right.cols
        if self.chance(0.3):
            conds += self.where(cols, None, 1)
        on = N(" AND ".join(f"{{{i}}}" for i in range(len(conds))), conds)
        if self.chance(0.1) and kind in ("JOIN", "INNER JOIN", "LEFT JOIN") and a.ref.split(".")[1] == b.ref.split(".")[1] \
                and len(conds) == 1 and not left.subquery and isinstance(left.sql, str) and " JOIN " not in left.sql:
            name = a.ref.split(".")[1]
            text = N(f"{{0}} {kind} {{1}} USING ({name})", [self._text(left), self._text(right)])
            # USING merges the key into one column; refer to the left side's.
            cols = left.cols + [c for c in right.cols if c.ref != b.ref]
        else:
            text = N(f"{{0}} {kind} {{1}} ON {{2}}", [self._text(left), self._text(right), on])
        rows = max(left.rows, right.rows) * 2
        return Rel(text, cols, rows, left.order_key + right.order_key, subquery=True)

    def _text(self, rel):
        return rel.sql if isinstance(rel.sql, N) else N(rel.sql)

    def join_key(self, a, b):
        def side(c):
            e = N(c.ref, t=c.t)
            e.bound = c.bound
            if c.t == INT and self.chance(0.15):
                e = N(self.pick(["({0} + 1)", "({0} - 1)", "({0} * 2)"]), [e], INT)
            elif c.t == FLT and self.chance(0.3):
                e = N(self.pick(["(-{0})", "({0} * 2)", "({0} * -1.0::DOUBLE)", "({0} - {0})", "round({0}, 1)"
                                 if "round_digits" not in self.known else "round({0})"]), [e], FLT)
            return self.key(e)
        if self.chance(0.15):
            return N("({0} IS NOT DISTINCT FROM {1})", [side(a), side(b)], BOOL)
        if a.t == INT and b.t == INT and self.chance(0.1):
            return N("(CAST({0} AS DOUBLE) = {1})", [side(a), self.key(N("CAST({0} AS DOUBLE)", [side(b)], FLT))], BOOL)
        return N("({0} = {1})", [side(a), side(b)], BOOL)

    # -- queries -------------------------------------------------------------------------------

    def where(self, cols, rel, n=None):
        conds = []
        for _ in range(n if n is not None else self.r.choice([0, 1, 1, 2, 3])):
            if self.chance(0.12):
                conds.append(self.in_subquery(cols))
            else:
                conds.append(self.expr(BOOL, cols, self.r.randint(1, 3)))
        if "constant_subexpression" in self.known:  # `… AND TRUE AND FALSE` fails too
            conds = [c for c in conds if re.search(r"\br\d+\.", c.sql())]
        return conds

    def in_subquery(self, cols):
        t = self.pick([INT, INT, STR, FLT, DATE])
        pool = [c for c in cols if c.t == t]
        rel = self.base(self.pick(["t2", "t1"]), 2000)
        inner = [c for c in rel.cols if c.t == t]
        if not pool or not inner:
            return self.expr(BOOL, cols, 2)
        left = self.key(self.expr(t, cols, 1))
        sel = self.key(self.expr(t, rel.cols, 1)) if self.chance(0.4) else self.key(N(self.pick(inner).ref, t=t))
        conds = self.where(rel.cols, rel, self.pick([0, 1]))
        where = (" WHERE " + " AND ".join(f"{{{i + 2}}}" for i in range(len(conds)))) if conds else ""
        return N(f"({{0}} {self.pick(['IN', 'NOT IN'])} (SELECT {{1}} FROM {rel.sql}{where}))", [left, sel] + conds, BOOL)

    def select(self, depth, target, want_cols=None):
        """(tree, [(alias, type, bound, ndv, fuzzy)], estimated rows) of a SELECT.
        `want_cols`, a list of types, fixes the output (for UNION arms)."""
        k = self.r.random()
        if want_cols is None and depth > 0 and k < 0.12:
            return self.union(depth, target)
        if want_cols is None and k < 0.27:
            return self.window_query(depth, target)
        agg = k < 0.62
        rel = self.from_item(depth, 4000 if not agg else max(target, 20000))
        cols = rel.cols
        conds = self.where(cols, rel)
        if agg:
            return self.aggregate_query(rel, conds, target, want_cols)
        types = want_cols or [self.pick(TYPES) for _ in range(self.r.randint(1, 4))]
        distinct = self.chance(0.2)
        items = []
        outs = []
        for i, t in enumerate(types):
            keyed = distinct or want_cols is not None
            e = self.expr(t, cols, self.r.randint(0, 3), fuzzy_ok=not keyed)
            if keyed:
                e = self.key(e)
            a = self.fresh("c")
            items.append(N("{0} AS " + a, [e]))
            outs.append((a, t, getattr(e, "bound", 1e18), rel.rows, e.fuzzy))
        sel = Seq(", ", items, keep=len(items) if want_cols else 1)
        order = self.order(sel, outs, target, want_cols)
        where = self._where(conds)
        q = N("SELECT " + ("DISTINCT " if distinct else "") + "{0} FROM {1}{2}{3}", [sel, self._text(rel), where, order])
        return q, outs, min(rel.rows, order.limit or rel.rows) if isinstance(order, OrderAll) else rel.rows

    def _where(self, conds, word="WHERE"):
        if not conds:
            return EMPTY
        return N(f" {word} {{0}}", [Seq(" AND ", conds)], opt=True)

    def order(self, sel, outs, target, want_cols):
        if want_cols is None and self.chance(0.3) and not any(o[4] for o in outs):
            dirs = [self.pick(["", " DESC", " ASC NULLS FIRST", " DESC NULLS LAST", " NULLS FIRST"])
                    for _ in range(len(outs))]
            return OrderAll(sel, dirs, self.pick([1, 3, 10, 100, None]) if self.chance(0.9) else None)
        return EMPTY

    def aggregate_query(self, rel, conds, target, want_cols):
        cols = rel.cols
        types = want_cols or None
        nkeys = self.r.choice([0, 1, 1, 2, 2, 3]) if types is None else min(len(types), self.r.choice([0, 1, 2]))
        keys, items, outs = [], [], []
        key_types = types[:nkeys] if types else [self.pick([INT, INT, STR, BOOL, DATE, FLT, TS]) for _ in range(nkeys)]
        keycols = []
        for i, t in enumerate(key_types):
            low = [c for c in cols if c.t == t and c.ndv <= 3000]
            if low and self.chance(0.6):
                e = N(self.pick(low).ref, t=t)
            else:
                e = self.expr(t, [c for c in cols if c.ndv <= 3000] or cols, 1)
            e = self.key(e)
            if not re.search(r"\br\d+\.", e.sql()) or any(e.sql() == k.sql() for k, _ in keys):
                # A constant key is a position to DuckDB; a repeated one confuses its grouping sets.
                if types:
                    break  # the output's types are fixed: the rest come from aggregates
                continue
            a = self.fresh("c")
            keys.append((e, a))
            items.append(N("{0} AS " + a, [e]))
            keycols.append(Col(e.sql(), t))
            outs.append((a, t, 1e18, 100, False))
        grouped = bool(keys)
        agg_types = (types[nkeys:] if types else [self.pick([INT, INT, FLT, FLT, STR, DATE]) for _ in range(self.r.randint(1, 3))])
        fuzzy_ok = types is None
        if types is not None:
            agg_types = types[len(keys):]
        pure = True
        for j, t in enumerate(agg_types):
            e = self.expr(t, cols, self.r.randint(1, 2), aggs=keycols, fuzzy_ok=fuzzy_ok)
            pure = pure and re.match(r"(count|sum|min|max|avg)\(", e.fmt or "") is not None and e.fmt.endswith(")")
            if types is not None:
                e = self.key(e)
            a = self.fresh("c")
            items.append(N("{0} AS " + a, [e]))
            outs.append((a, t, 1e18, 100, e.fuzzy))
        group = EMPTY
        gsets = False
        if grouped:
            form = self.r.random()
            how = self.r.randrange(3)
            refs = [[e.sql(), a, str(i + 1)][how] for i, (e, a) in enumerate(keys)]
            if form < 0.55 or len(keys) == 0:
                group = N(" GROUP BY " + (", ".join(refs) if not pure or self.chance(0.9) else "ALL"))
            else:
                gsets = True
                no_empty = "empty_grouping_set" in self.known
                choices = ["sets"] + ([] if no_empty else ["rollup", "cube", "mixed"])
                f = self.pick(choices)
                if f == "rollup":
                    group = N(f" GROUP BY ROLLUP ({', '.join(refs)})")
                elif f == "cube":
                    group = N(f" GROUP BY CUBE ({', '.join(refs)})")
                elif f == "mixed" and len(refs) > 1:
                    group = N(f" GROUP BY {refs[0]}, ROLLUP ({', '.join(refs[1:])})")
                else:
                    sets = ["(" + ", ".join(refs) + ")"]
                    for _ in range(self.r.randint(1, 3)):
                        sub = [r for r in refs if self.chance(0.5)]
                        sets.append("(" + ", ".join(sub) + ")")
                    if no_empty:
                        sets = [s for s in sets if s != "()"] or sets[:1]
                    group = N(f" GROUP BY GROUPING SETS ({', '.join(sets)})")
                if types is None and self.chance(0.5):
                    ks = [e.sql() if how == 2 else r for (e, _), r in zip(keys, refs)]
                    args = ", ".join(self.r.sample(ks, self.r.randint(1, len(ks))))
                    a = self.fresh("c")
                    items.append(N(f"grouping({args}) AS {a}"))
                    outs.append((a, INT, 1e18, 100, False))
        having = EMPTY
        if self.chance(0.3) and (grouped or "having_without_aggregate" not in self.known):
            h = [self.expr(BOOL, cols, 2, aggs=keycols, fuzzy_ok=False)]
            if "constant_subexpression" in self.known:
                h = [c for c in h if re.search(r"\br\d+\.|count\(\*\)", c.sql())]
            having = self._where(h, "HAVING")
        sel = Seq(", ", items, keep=len(items) if types else 1)
        order = self.order(sel, outs, target, want_cols)
        q = N("SELECT {0} FROM {1}{2}{3}{4}{5}", [sel, self._text(rel), self._where(conds), group, having, order])
        rows = 1 if not grouped else min(rel.rows, 2000)
        if gsets or not grouped:
            rows = max(rows, 1)
        return q, outs, rows

    def union(self, depth, target):
        types = [self.pick([INT, STR, FLT, DATE, BOOL]) for _ in range(self.r.randint(1, 3))]
        a, outs, ra = self.select(depth - 1, target, want_cols=types)
        b, _, rb = self.select(depth - 1, target, want_cols=types)
        op = self.pick(["UNION ALL", "UNION"])
        if op == "UNION":
            outs = [(n, t, bd, nd, f) for n, t, bd, nd, f in outs]
        return N(f"{{0}} {op} {{1}}", [a, b]), outs, ra + rb

    def window_query(self, depth, target):
        name = self.pick(["t1", "t1", "t2"])
        wrap = depth > 0 and self.chance(0.3)
        rel = self.base(name, 3000)
        if not wrap and self.chance(0.3):
            d = self.derived(3000, 1)
            if not any(c.fuzzy for c in d.cols):
                rel = d
        cols = rel.cols
        conds = self.where(cols, rel, self.pick([0, 0, 1]))
        items, outs = [], []
        for i in range(self.r.randint(0, 2)):
            t = self.pick(TYPES)
            e = self.expr(t, cols, 1)
            a = self.fresh("c")
            items.append(N("{0} AS " + a, [e]))
            outs.append((a, t, 1e18, rel.rows, e.fuzzy))
        for c in rel.order_key:
            a = self.fresh("c")
            items.append(N(f"{c} AS {a}"))
            outs.append((a, next(cc.t for cc in cols if cc.ref == c), 1e18, rel.rows, False))
        windows = []
        for _ in range(self.r.randint(1, 3)):
            w, t, fz = self.window(cols, rel)
            a = self.fresh("c")
            items.append(N("{0} AS " + a, [w]))
            outs.append((a, t, 1e18, rel.rows, fz))
            windows.append((w, a, t, fz))
        qualify = EMPTY
        if self.chance(0.25):
            w, a, t, fz = self.pick(windows)
            if t == INT and not fz:
                by_alias = self.chance(0.5) and not ("qualify_alias_over_subquery" in self.known and rel.subquery)
                qualify = N(f" QUALIFY {{0}} {self.pick(['<=', '>', '=', '<>'])} {self.pick([1, 2, 3])}",
                            [N(a) if by_alias else w], opt=True)
        sel = Seq(", ", items)
        q = N("SELECT {0} FROM {1}{2}{3}", [sel, self._text(rel), self._where(conds), qualify])
        if wrap:
            alias = self.fresh("r")
            wcols = [Col(f"{alias}.{a}", t, 1e18, 100, fz) for a, t, _, _, fz in outs]
            if self.chance(0.5):
                sel2 = Seq(", ", [N(c.ref + " AS " + c.ref.split(".")[1]) for c in wcols])
                conds2 = self.where([c for c in wcols if not c.fuzzy], None, 1)
                q = N("SELECT {0} FROM ({1}) AS " + alias + "{2}", [sel2, q, self._where(conds2)])
            else:
                keyc = [c for c in wcols if not c.fuzzy and c.t in (INT, STR, BOOL)][:1]
                last = self.key(N(wcols[-1].ref, t=wcols[-1].t)).sql()
                agg = self.pick(["count(*)", f"count(DISTINCT {last})" if not wcols[-1].fuzzy else "count(*)",
                                 f"max({wcols[-1].ref})"])
                at = INT if agg.startswith("count") else wcols[-1].t
                gb = f", {keyc[0].ref} AS k0 " if keyc else " "
                q = N("SELECT " + agg + " AS a0" + gb + "FROM ({0}) AS " + alias + (f" GROUP BY {keyc[0].ref}" if keyc else ""),
                      [q])
                outs = [("a0", at, 1e18, 100, False)] + ([("k0", keyc[0].t, 1e18, 100, False)] if keyc else [])
        return q, outs, rel.rows

    def window(self, cols, rel):
        """A window call, its type and whether it is fuzzy. Functions that
        depend on the order of tied rows order by the relation's unique key last."""
        part_pool = [c for c in cols if c.t in (INT, STR, BOOL, DATE) and c.ndv <= 3000]
        parts = [self.key(N(c.ref, t=c.t)) for c in self.r.sample(part_pool, min(len(part_pool), self.r.randint(0, 2)))]
        order_pool = [c for c in cols if c.t in (INT, FLT, STR, DATE, TS) and not c.fuzzy]
        orders = [c.ref + self.pick(["", " DESC", " NULLS FIRST", " DESC NULLS LAST"])
                  for c in self.r.sample(order_pool, min(len(order_pool), self.r.randint(1, 2)))]
        total = orders + [k for k in rel.order_key]
        f = self.r.randrange(9)
        frame = ""
        t, fz = INT, False
        if f == 0:
            call, o = "row_number()", total
        elif f == 1:
            call, o = self.pick(["rank()", "dense_rank()"]), orders
        elif f in (2, 3):
            t = self.pick([INT, FLT, STR, DATE])
            arg = self.expr(t, cols, 1)
            off = self.pick(["", ", 1", ", 2", ", 3"])
            dflt = f", {self.literal(t).sql()}" if off and self.chance(0.4) else ""
            call, o = f"{self.pick(['lag', 'lead'])}({arg.sql()}{off}{dflt})", total
            fz = arg.fuzzy
        elif f == 4:
            t = self.pick([INT, FLT, STR])
            call, o = f"{self.pick(['first_value', 'last_value'])}({self.expr(t, cols, 1).sql()})", total
        else:
            t = self.pick([INT, FLT])
            fn = self.pick(["sum", "count", "min", "max", "avg", "count(*)"])
            arg = self.expr(t, cols, 1)
            if arg.t == INT and getattr(arg, "bound", 1e18) * self.rows > 9e18:
                arg = N(self.pick([c.ref for c in cols if c.t == INT] or ["1"]), t=INT)
            call = "count(*)" if fn == "count(*)" else f"{fn}({arg.sql()})"
            if fn in ("count", "count(*)"):
                t = INT
            elif fn == "avg" or (fn == "sum" and t == FLT):
                t, fz = FLT, t == FLT or fn == "avg" and t == FLT
                self.fuzzy_query = self.fuzzy_query or fz
            choice = self.r.random()
            if choice < 0.3:
                o = orders  # default frame: up to the last peer, the same whatever the order of ties
            elif choice < 0.45:
                o = []
            else:
                o = total
                frame = " " + self.pick(["ROWS BETWEEN 2 PRECEDING AND 1 FOLLOWING", "ROWS 3 PRECEDING",
                                         "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW",
                                         "ROWS BETWEEN 1 FOLLOWING AND 4 FOLLOWING",
                                         "ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING",
                                         "RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW",
                                         "RANGE BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING"])
                if frame.startswith(" RANGE"):
                    o = orders
        over = []
        if parts:
            over.append("PARTITION BY " + ", ".join(p.sql() for p in parts))
        if o:
            over.append("ORDER BY " + ", ".join(o))
        w = N(f"{call} OVER ({' '.join(over)}{frame if o else ''})", [], t, fz)
        if f == 4 and t == FLT:
            w.fuzzy = False
        return w, t, fz

    def query(self):
        """A whole statement: (tree, fuzzy) where fuzzy asks for the looser tolerance."""
        self.ctes = []
        self.fuzzy_query = False
        q, outs, rows = self.select(2, 2000)
        if self.ctes:
            ctes = list(self.ctes)
            q = N("WITH " + ", ".join(f"{name} AS ({{{i}}})" for i, (name, _) in enumerate(ctes)) + " {%d}" % len(ctes),
                  [c for _, c in ctes] + [q])
        return q, self.fuzzy_query


# ---------------------------------------------------------------------------------------------
# Running queries


class QueryError(Exception):
    pass


class Keel:
    """Queries through Flight SQL against a scheduler that has t1 and t2 registered."""

    def __init__(self, url, timeout=120):
        import adbc_driver_flightsql.dbapi as dbapi
        from adbc_driver_flightsql import DatabaseOptions

        self.uri = url.replace("http://", "grpc://").replace("https://", "grpc+tls://")
        self.kwargs = {DatabaseOptions.TIMEOUT_QUERY.value: str(timeout), DatabaseOptions.TIMEOUT_FETCH.value: str(timeout)}
        self.dbapi = dbapi
        self.conn = None

    def run(self, sql):
        if self.conn is None:
            self.conn = self.dbapi.connect(self.uri, db_kwargs=self.kwargs)
        try:
            cur = self.conn.cursor()
            try:
                cur.execute(sql)
                table = cur.fetch_arrow_table()
            finally:
                cur.close()
        except Exception as e:  # the driver's errors carry Keel's message
            msg = str(e)
            if "deadline" in msg.lower() or "unavailable" in msg.lower():
                self.close()
            raise QueryError(msg) from None
        cols = [c.to_pylist() for c in table.columns]
        return list(zip(*cols)) if cols else []

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None


class Duck:
    """DuckDB over the same Parquet files, each query interrupted after `timeout` seconds."""

    def __init__(self, data, timeout=60, threads=2):
        import duckdb

        self.con = duckdb.connect()
        self.con.execute(f"SET threads={threads}")
        self.con.execute("SET enable_progress_bar=false")
        try:
            self.con.execute("SET TimeZone='UTC'")  # Keel has no zones: instants are UTC
        except Exception:
            pass
        for t in ("t1", "t2"):
            self.con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{data}/{t}/*.parquet')")
        self.timeout = timeout

    def run(self, sql, timeout=None):
        timer = threading.Timer(timeout or self.timeout, self.con.interrupt)
        timer.start()
        try:
            return [tuple(r) for r in self.con.execute(sql).fetchall()]
        except Exception as e:
            raise QueryError(str(e).split("\n")[0]) from None
        finally:
            timer.cancel()

    def count(self, sql, timeout=20):
        return self.run(f"SELECT count(*) FROM ({sql})", timeout)[0][0]


# ---------------------------------------------------------------------------------------------
# Comparing answers


def normalize(v):
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return v
    if isinstance(v, decimal.Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, datetime.datetime):
        if v.tzinfo is not None:  # DuckDB's to_timestamp gives a TIMESTAMPTZ: Keel's is UTC
            v = v.astimezone(datetime.timezone.utc)
        return v.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(v, datetime.date):
        return v.strftime("%Y-%m-%d 00:00:00.000000")
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    return repr(v)


def _coarse(v):
    if isinstance(v, bool) or v is None:
        return (0 if v is None else 1, 0, "" if v is None else str(v))
    if isinstance(v, float):
        if math.isnan(v):
            return (2, math.inf, "nan")
        return (2, float(f"{v:.5g}") if math.isfinite(v) else v, "")
    if isinstance(v, int):
        return (2, v, "")
    return (3, 0, v)


def row_key(row):
    return tuple(_coarse(v) for v in row), tuple((v is None, str(v)) for v in row)


def same_value(a, b, rel, abs_tol):
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (a == b and type(a) == type(b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        if math.isinf(a) or math.isinf(b):
            return a == b
        return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol)
    return a == b


def same_row(a, b, rel, abs_tol):
    return len(a) == len(b) and all(same_value(x, y, rel, abs_tol) for x, y in zip(a, b))


def compare(expected, actual, ordered, fuzzy):
    """None if the answers agree, else a short description of the first difference."""
    rel, abs_tol = (1e-6, 1e-6) if fuzzy else (1e-9, 1e-9)
    e = [tuple(normalize(v) for v in r) for r in expected]
    a = [tuple(normalize(v) for v in r) for r in actual]
    if len(e) != len(a):
        extra = _multiset_diff(e, a, rel, abs_tol)
        return f"{len(a)} rows, DuckDB gives {len(e)}{extra}"
    if not ordered:
        e.sort(key=row_key)
        a.sort(key=row_key)
    for i, (x, y) in enumerate(zip(e, a)):
        if not same_row(x, y, rel, abs_tol):
            if not ordered and len(e) <= 3000 and not _multiset_diff(e, a, rel, abs_tol):
                return None  # the same rows, paired differently by the sort
            return f"row {i}: Keel {_show(y)}, DuckDB {_show(x)}" + (_multiset_diff(e, a, rel, abs_tol) if not ordered else "")
    return None


def _show(row, limit=300):
    s = repr(row)
    return s if len(s) <= limit else s[:limit] + "…"


def _multiset_diff(e, a, rel, abs_tol, limit=3000):
    """The rows only one side has (greedy matching within the tolerance), as text."""
    if len(e) > limit or len(a) > limit:
        return ""
    rest = list(a)
    only_e = []
    by_key = {}
    for i, r in enumerate(rest):
        by_key.setdefault(len(r), []).append(i)
    used = set()
    for r in e:
        hit = next((i for i in by_key.get(len(r), []) if i not in used and same_row(r, rest[i], rel, abs_tol)), None)
        if hit is None:
            only_e.append(r)
        else:
            used.add(hit)
    only_a = [r for i, r in enumerate(rest) if i not in used]
    if not only_e and not only_a:
        return ""
    return (f"; only Keel has {len(only_a)}: {_show(only_a[:4])}" if only_a else "") + \
        (f"; only DuckDB has {len(only_e)}: {_show(only_e[:4])}" if only_e else "")


@dataclasses.dataclass
class Outcome:
    kind: str  # same | both_failed | refused | skipped | keel_error | duckdb_error | wrong | keel_timeout
    detail: str = ""
    seconds: float = 0.0

    @property
    def differs(self):
        return self.kind in ("keel_error", "duckdb_error", "wrong")


MAX_ROWS = 100_000


def check(keel, duck, sql, fuzzy=False):
    """Runs `sql` on both engines and classifies the outcome."""
    start = time.time()
    try:
        if duck.count(sql) > MAX_ROWS:
            return Outcome("skipped", "more than %d rows" % MAX_ROWS)
    except QueryError as e:
        if "INTERRUPT" in str(e).upper():
            return Outcome("skipped", "DuckDB took too long")
    try:
        expected, derr = duck.run(sql), None
    except QueryError as e:
        expected, derr = None, str(e)
    try:
        actual, kerr = keel.run(sql), None
    except QueryError as e:
        actual, kerr = None, str(e)
    took = time.time() - start
    if derr and "INTERRUPT" in derr.upper():
        return Outcome("skipped", "DuckDB took too long", took)
    if kerr is not None and derr is not None:
        return Outcome("both_failed", f"Keel: {short_error(kerr)} | DuckDB: {derr}", took)
    if kerr is not None:
        if "not supported" in kerr:
            return Outcome("refused", short_error(kerr), took)
        if "deadline" in kerr.lower() or "timed out" in kerr.lower():
            return Outcome("keel_timeout", short_error(kerr), took)
        return Outcome("keel_error", short_error(kerr), took)
    if derr is not None:
        return Outcome("duckdb_error", f"DuckDB: {derr}; Keel gave {len(actual)} rows: {_show(actual[:3])}", took)
    diff = compare(expected, actual, ordered=is_ordered(sql), fuzzy=fuzzy)
    return Outcome("wrong", diff, took) if diff else Outcome("same", "", took)


def is_ordered(sql):
    """ORDER BY … LIMIT at the end of the statement: compared in order."""
    return re.search(r"ORDER BY [0-9][^()]*LIMIT \d+$", sql) is not None


def short_error(msg):
    msg = re.sub(r"\s+", " ", msg)
    m = re.search(r"(not supported.*?)(?: \(InvalidArgument|$)|(Error: .*)", msg)
    s = (m.group(1) or m.group(2)) if m else msg
    return s[:400]


def error_class(msg):
    """An error message with its numbers, ids and paths blanked: the same class across reduced queries."""
    s = re.sub(r"'[^']*'|\"[^\"]*\"|/\S+", "…", msg)
    s = re.sub(r"\d+", "N", s)
    return s[:120]


# ---------------------------------------------------------------------------------------------
# Reducing


def _paths(node, path=()):
    yield path, node
    for i, k in enumerate(node.kids):
        if isinstance(k, N):
            yield from _paths(k, path + (i,))


def _replace(node, path, new):
    if not path:
        return new
    kids = list(node.kids)
    kids[path[0]] = _replace(kids[path[0]], path[1:], new)
    return node.with_kids(kids)


SIMPLE = {INT: "1", FLT: "1.5::DOUBLE", STR: "'a'", BOOL: "TRUE", DATE: "DATE '2021-01-01'",
          TS: "TIMESTAMP '2021-01-01 00:00:00'"}


def _candidates(root):
    """Smaller trees: a list item dropped, an optional clause dropped, an
    expression replaced by an operand of its type or by a constant."""
    for path, n in _paths(root):
        if isinstance(n, Seq) and len(n.kids) > n.keep:
            for i in range(len(n.kids)):
                yield _replace(root, path, n.with_kids(n.kids[:i] + n.kids[i + 1:]))
        if n.opt:
            yield _replace(root, path, EMPTY)
    for path, n in _paths(root):
        if n.t is not None:
            for k in n.kids:
                if isinstance(k, N) and k.t == n.t:
                    yield _replace(root, path, k)
            if n.kids:
                yield _replace(root, path, lit(SIMPLE[n.t], n.t))


def reduce(keel, duck, root, fuzzy, outcome, budget=150, deadline=None):
    """The smallest tree found, by greedy passes, whose query still differs
    in the same way (the same kind; for errors, the same class of message)."""
    def same_way(o):
        if o.kind != outcome.kind:
            return False
        if o.kind in ("keel_error", "duckdb_error"):
            return error_class(o.detail) == error_class(outcome.detail)
        return True

    tried = 0
    best, best_outcome = root, outcome
    changed = True
    while changed and tried < budget and (deadline is None or time.time() < deadline):
        changed = False
        for cand in _candidates(best):
            if tried >= budget or (deadline is not None and time.time() > deadline):
                break
            sql = cand.sql()
            if len(sql) >= len(best.sql()):
                continue
            tried += 1
            o = check(keel, duck, sql, fuzzy)
            if same_way(o):
                best, best_outcome, changed = cand, o, True
                break
    return best, best_outcome


# ---------------------------------------------------------------------------------------------
# Many queries


@dataclasses.dataclass
class Finding:
    seed: int
    sql: str
    outcome: Outcome
    reduced_sql: str = None
    reduced_outcome: Outcome = None

    def text(self):
        lines = [f"seed {self.seed}: {self.outcome.kind}: {self.outcome.detail}", f"  {self.sql}"]
        if self.reduced_sql and self.reduced_sql != self.sql:
            lines += [f"  reduced ({self.reduced_outcome.kind}: {self.reduced_outcome.detail}):", f"  {self.reduced_sql}"]
        return "\n".join(lines)


def generate(seed, rows, known=None):
    """The query of one seed: (sql, tree, fuzzy)."""
    g = Gen(seed, rows, known)
    tree, fuzzy = g.query()
    return tree.sql(), tree, fuzzy


def run_many(keel, duck, seeds, rows, known=None, reduce_budget=0, progress=None, reduce_seconds=120):
    """Runs the query of every seed; returns (counts by outcome kind, findings, refusals)."""
    counts, findings, refusals = {}, [], {}
    for i, seed in enumerate(seeds):
        sql, tree, fuzzy = generate(seed, rows, known)
        o = check(keel, duck, sql, fuzzy)
        counts[o.kind] = counts.get(o.kind, 0) + 1
        if o.kind == "refused":
            refusals.setdefault(error_class(o.detail), []).append((seed, sql))
        if o.differs:
            f = Finding(seed, sql, o)
            if reduce_budget:
                f.reduced_sql_tree, f.reduced_outcome = reduce(keel, duck, tree, fuzzy, o, reduce_budget,
                                                               time.time() + reduce_seconds)
                f.reduced_sql = f.reduced_sql_tree.sql()
            findings.append(f)
        if progress:
            progress(i, seed, sql, o)
    return counts, findings, refusals
