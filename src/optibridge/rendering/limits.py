"""Bounds on one render: ranges, filter outputs, loop iterations, output size and time.

python-liquid bounds nested loops, the output stream, local variables and context depth (the
environment limits below), but not what a filter builds: `{{ (1..20000000) | join: "x" | size }}`
made a 20-million-item string in one filter call (26 s on the event loop). So:

- a range literal longer than MAX_RANGE_ITEMS is refused when parsed with literal bounds
  (`static_problems`, at save) and when evaluated with variable ones (`BoundedRange`);
- every filter is wrapped (`guard_filters`): a range or list argument longer than MAX_ITEMS is
  refused before the filter runs; the amplifying filters (join, append, prepend, replace*, split)
  compute their output size first and refuse above MAX_FILTER_OUTPUT without building it; any
  result longer than that (string or list), or an integer wider than MAX_INT_BITS (`times` in a
  loop squares its digits), is refused after;
- loops: python-liquid's limit is per loop nest; `TOTAL_LOOP_ITERATIONS` bounds all the loops of one
  render together, and each iteration checks the render's deadline (`Budget`), as does every
  filter call, so a render stops within a few milliseconds of its deadline even though a thread
  cannot be interrupted.

These are module constants, not settings: the environment is process-wide and built at import,
templates are compiled by paths that have no settings (catalog, CLI import, demo), and a template
accepted by the API process must render the same in every worker - limits that could differ
between processes would let a saved template fail at send. Only the time limit, which depends on
the machine, is a setting (`render_timeout_s`), passed to the render where settings are reachable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from liquid import BoundTemplate, RenderContext
from liquid.builtin.expressions.primitive import IntegerLiteral, RangeLiteral
from liquid.exceptions import LiquidError
from liquid.limits import to_int

# python-liquid's own environment limits (see templates._SandboxEnv).
LOOP_ITERATION_LIMIT = 10_000  # iterations of one loop nest (product of nested loop lengths)
OUTPUT_STREAM_LIMIT = 1_000_000  # characters a template part may write
LOCAL_NAMESPACE_LIMIT = 200_000  # bytes (sys.getsizeof) of assigned/captured variables
CONTEXT_DEPTH_LIMIT = 30

# Ours.
MAX_RANGE_ITEMS = 10_000  # (a..b) longer than this is refused
MAX_ITEMS = 10_000  # a list or range a filter takes or makes
MAX_FILTER_OUTPUT = 1_000_000  # characters one filter call may produce
MAX_INT_BITS = 128  # an integer a filter produces (|n| < 2**128)
TOTAL_LOOP_ITERATIONS = 100_000  # all loop iterations of one render
# Tags ({{ }} and {% %}) in one part. Parsing is the one step no deadline can stop: 140,000 output
# tags took 3.5 s of CPU in python-liquid's parser here, 20,000 take ~0.3 s; real e-mails have
# hundreds.
MAX_TAGS = 20_000
DEFAULT_RENDER_TIMEOUT_S = 1.0  # where no setting is reachable (direct renders, catalog imports)


class _LimitHit(LiquidError):
    """Raised inside Liquid so its machinery passes it through; translated to RenderLimitError."""


@dataclass
class Budget:
    """One render's allowance: a deadline (monotonic seconds) and loop iterations left."""

    deadline: float
    timeout_s: float
    iterations_left: int = TOTAL_LOOP_ITERATIONS
    timed_out: bool = field(default=False)

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            self.timed_out = True
            raise _LimitHit(f"render took longer than {self.timeout_s:g} s", token=None)

    def charge(self, iterations: int) -> None:
        self.iterations_left -= iterations
        if self.iterations_left < 0:
            raise _LimitHit(f"more than {TOTAL_LOOP_ITERATIONS} loop iterations in one render", token=None)
        self.check()

    def ticking(self, items: Iterator[Any]) -> Iterator[Any]:
        for item in items:
            self.check()
            yield item


_BUDGET: ContextVar[Budget | None] = ContextVar("optibridge_render_budget", default=None)


def start(timeout_s: float) -> Budget:
    """A budget whose deadline is `timeout_s` from now."""
    return Budget(deadline=time.monotonic() + timeout_s, timeout_s=timeout_s)


@contextmanager
def using(allowance: Budget) -> Iterator[Budget]:
    """Run renders under `allowance`: every loop iteration and filter call checks its deadline."""
    token = _BUDGET.set(allowance)
    try:
        yield allowance
    finally:
        _BUDGET.reset(token)


def _check_deadline() -> None:
    b = _BUDGET.get()
    if b is not None:
        b.check()


def limit_detail(exc: LiquidError) -> str | None:
    """What limit a Liquid error is about (python-liquid's own and ours), or None for another error."""
    if isinstance(exc, _LimitHit) or type(exc).__name__ in _LIQUID_LIMIT_ERRORS:
        return str(exc.args[0] if exc.args else type(exc).__name__).splitlines()[0]
    return None


_LIQUID_LIMIT_ERRORS = frozenset(
    {
        "LoopIterationLimitError",
        "OutputStreamLimitError",
        "LocalNamespaceLimitError",
        "ContextDepthError",
    }
)


# --- ranges -----------------------------------------------------------------------------------


def range_length(start: object, stop: object) -> int | None:
    """Items in (start..stop) when both are integers (Liquid's rules: descending is empty)."""
    try:
        a, b = to_int(start), to_int(stop)
    except (ValueError, TypeError, LiquidError):
        return None
    return max(0, b - a + 1)


class BoundedRange(RangeLiteral):
    """A range literal that refuses to become longer than MAX_RANGE_ITEMS.

    Installed on parsed templates by `bound_ranges` (by class swap: same slots, one method more).
    """

    __slots__ = ()

    def _make_range(self, start: Any, stop: Any) -> range:
        made = super()._make_range(start, stop)
        if made.stop - made.start > MAX_RANGE_ITEMS:
            raise _LimitHit(
                f"a range of {made.stop - made.start} items (limit {MAX_RANGE_ITEMS})", token=None
            )
        _check_deadline()
        return made


def _walk_expressions(template: BoundTemplate) -> Iterator[Any]:
    """Every expression in a parsed template, nested blocks included."""
    static = RenderContext(template)
    nodes = list(template.nodes)
    seen = 0
    while nodes:
        node = nodes.pop()
        seen += 1
        if seen > 1_000_000:  # a parse tree is bounded by its source; this is a backstop
            break
        stack = list(node.expressions())
        while stack:
            expression = stack.pop()
            yield expression
            stack.extend(expression.children())
        nodes.extend(node.children(static, include_partials=False))


def bound_ranges(template: BoundTemplate) -> list[str]:
    """Make every range literal of `template` bounded; returns the problems of literal bounds."""
    problems: list[str] = []
    for expression in _walk_expressions(template):
        if type(expression) is RangeLiteral:
            expression.__class__ = BoundedRange
        if isinstance(expression, RangeLiteral):
            start, stop = expression.start, expression.stop
            if isinstance(start, IntegerLiteral) and isinstance(stop, IntegerLiteral):
                n = range_length(start.value, stop.value)
                if n is not None and n > MAX_RANGE_ITEMS:
                    problems.append(f"the range {expression} has {n} items (limit {MAX_RANGE_ITEMS})")
    return problems


# --- filters ----------------------------------------------------------------------------------


def _text_len(value: object) -> int:
    """The length of `value` as Liquid would write it (an estimate for non-strings)."""
    # type() rather than isinstance(): a strict Undefined raises on any attribute, __class__ too.
    if type(value) is str:
        return len(value)
    if value is None or not issubclass(type(value), str | int | float | list | tuple | range):
        return 0
    try:
        return len(str(value))
    except ValueError:  # an integer too long for str(): far over any limit
        return MAX_FILTER_OUTPUT + 1


def _too_long(what: str, n: int) -> _LimitHit:
    return _LimitHit(f"{what} would make {n} characters (limit {MAX_FILTER_OUTPUT})", token=None)


def _pre_join(left: object, args: tuple[Any, ...]) -> None:
    if not issubclass(type(left), list | tuple | range):
        return
    assert isinstance(left, list | tuple | range)
    separator = _text_len(args[0]) if args else 1
    total = max(0, len(left) - 1) * separator
    for item in left:
        total += _text_len(item)
        if total > MAX_FILTER_OUTPUT:
            raise _too_long("join", total)
    if total > MAX_FILTER_OUTPUT:
        raise _too_long("join", total)


def _pre_concatenate(name: str) -> Callable[[object, tuple[Any, ...]], None]:
    def check(left: object, args: tuple[Any, ...]) -> None:
        total = _text_len(left) + (_text_len(args[0]) if args else 0)
        if total > MAX_FILTER_OUTPUT:
            raise _too_long(name, total)

    return check


def _pre_replace(name: str, every: bool) -> Callable[[object, tuple[Any, ...]], None]:
    def check(left: object, args: tuple[Any, ...]) -> None:
        if not issubclass(type(left), str):
            return
        assert isinstance(left, str)
        old = str(args[0]) if args and args[0] is not None else ""
        new = _text_len(args[1]) if len(args) > 1 else 0
        times = (left.count(old) if old else len(left) + 1) if every else 1
        total = len(left) + times * max(0, new - len(old))
        if total > MAX_FILTER_OUTPUT:
            raise _too_long(name, total)

    return check


def _pre_split(left: object, args: tuple[Any, ...]) -> None:
    if not issubclass(type(left), str):
        return
    assert isinstance(left, str)
    sep = args[0] if args else None
    parts = left.count(sep) + 1 if isinstance(sep, str) and sep else len(left)
    if parts > MAX_ITEMS:
        raise _LimitHit(f"split would make {parts} items (limit {MAX_ITEMS})", token=None)


_PRECHECKS: dict[str, Callable[[object, tuple[Any, ...]], None]] = {
    "join": _pre_join,
    "append": _pre_concatenate("append"),
    "prepend": _pre_concatenate("prepend"),
    "replace": _pre_replace("replace", every=True),
    "replace_first": _pre_replace("replace_first", every=False),
    "replace_last": _pre_replace("replace_last", every=False),
    "split": _pre_split,
}


_COLLECTIONS = frozenset({range, list, tuple})


def _check_argument(name: str, value: object) -> None:
    kind = type(value)  # not isinstance(): see _text_len
    if kind is range:
        assert isinstance(value, range)
        n = value.stop - value.start
        if n > MAX_ITEMS:
            raise _LimitHit(f"{name} was given a range of {n} items (limit {MAX_ITEMS})", token=None)
    elif issubclass(kind, list | tuple):
        assert isinstance(value, list | tuple)
        if len(value) > MAX_ITEMS:
            raise _LimitHit(f"{name} was given {len(value)} items (limit {MAX_ITEMS})", token=None)


def _check_result(name: str, value: object) -> None:
    kind = type(value)  # not isinstance(): see _text_len
    if issubclass(kind, str):
        assert isinstance(value, str)
        if len(value) > MAX_FILTER_OUTPUT:
            raise _too_long(name, len(value))
    elif kind is int:
        assert isinstance(value, int)
        if value.bit_length() > MAX_INT_BITS:
            raise _LimitHit(f"{name} made an integer wider than {MAX_INT_BITS} bits", token=None)
    elif issubclass(kind, list | tuple):
        assert isinstance(value, list | tuple)
        if len(value) > MAX_ITEMS:
            raise _LimitHit(f"{name} made {len(value)} items (limit {MAX_ITEMS})", token=None)


def guarded(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` under the limits: arguments, amplification and result checked, deadline too."""
    pre = _PRECHECKS.get(name)

    def run(left: object, *args: Any, **kwargs: Any) -> Any:
        # On every filter call of every message: the common cases take one type test each.
        allowance = _BUDGET.get()
        if allowance is not None and time.monotonic() > allowance.deadline:
            allowance.check()
        if type(left) in _COLLECTIONS:
            _check_argument(name, left)
        for arg in args:
            if type(arg) in _COLLECTIONS:
                _check_argument(name, arg)
        if pre is not None:
            pre(left, args)
        result = func(left, *args, **kwargs)
        if type(result) is not str or len(result) > MAX_FILTER_OUTPUT:
            _check_result(name, result)
        return result

    # python-liquid passes the context / environment to filters that ask for them by attribute.
    for attribute in ("with_context", "with_environment"):
        if getattr(func, attribute, False):
            setattr(run, attribute, True)
    run.__name__ = f"guarded_{name}"
    run.__doc__ = getattr(func, "__doc__", None)
    return run


def guard_filters(filters: dict[str, Callable[..., Any]]) -> None:
    """Wrap every registered filter in place (call after all filters are registered)."""
    for name, func in list(filters.items()):
        filters[name] = guarded(name, func)


# --- render context ---------------------------------------------------------------------------


class BoundedContext(RenderContext):
    """Charges every loop to the render's budget and checks the deadline at each iteration."""

    __slots__ = ()

    @contextmanager
    def loop(self, namespace: Mapping[str, object], forloop: Any) -> Iterator[RenderContext]:
        b = _BUDGET.get()
        if b is not None:
            b.charge(int(getattr(forloop, "length", 0) or 0))
            if hasattr(forloop, "it"):
                forloop.it = b.ticking(forloop.it)
        with super().loop(namespace, forloop) as context:
            yield context


class BoundedTemplate(BoundTemplate):
    context_class = BoundedContext


def count_tags(source: str) -> int:
    """How many Liquid tags and outputs a source holds (an upper bound: no parsing)."""
    return source.count("{{") + source.count("{%")
