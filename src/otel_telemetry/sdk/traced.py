"""App-side helper: the ``@traced`` decorator (the session context is in ``sessions``).

``traced`` wraps a sync or async function, generator or async generator in a span: latency,
success or failure (status ERROR and ``error.type`` on an exception), a child of the current span,
``gen_ai.agent.name`` and ``telemetry.event`` (the event type), and token usage read from the
return value (OpenAI, Anthropic, Gemini and LangChain ``usage`` shapes, dicts or objects) under the
current OTel ``gen_ai.usage.*`` names (``otel_telemetry.sdk.usage``). The collector turns those
into model/token/cost columns.

Privacy: argument values are never recorded unless ``capture_args=True``; results never are.

Call-time keywords of the original designs are taken by the wrapper and never reach the wrapped
function: ``_trace_id=`` (M1's trace id propagation, ``child_function(_trace_id=trace_id)``) puts
the call's span into that trace (see ``trace_ref.trace_context``).

Every wrapper runs on the caller's thread (or task). Our own work never raises into the app and
never blocks: only the wrapped function's own exception is re-raised, unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.trace import SpanKind, Status, StatusCode

from .trace_ref import TRACE_REF_ATTR, trace_context  # noqa: F401  # trace_context: this module's API too
from .usage import get_field as _get
from .usage import usage_attributes

log = logging.getLogger("otel_telemetry.traced")

F = TypeVar("F", bound=Callable[..., Any])
SCOPE = "otel_telemetry.traced"
ARG_REPR_LIMIT = 256
# event_type → gen_ai.operation.name, so these spans land in the ai_behavior category.
OPERATIONS = {"model_call": "chat", "tool_call": "execute_tool", "agent_call": "invoke_agent"}
# Keywords a caller may pass to any traced function (the design documents' spellings); the
# wrapper pops them, so the wrapped function never sees them.
TRACE_ID_KWARG = "_trace_id"


# --- the decorator ---------------------------------------------------------------------------

def _tracer() -> trace_api.Tracer:
    # The module, not the package attribute (``otel_telemetry.configure`` is the function there).
    cfg = importlib.import_module(".configure", __package__)
    return cfg.api_tracer_provider().get_tracer(SCOPE)


def _error_type(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _args_attr(sig: inspect.Signature | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    import orjson

    def short(v: Any) -> str:
        try:
            r = repr(v)
        except Exception:
            r = f"<{type(v).__name__}>"
        return r if len(r) <= ARG_REPR_LIMIT else r[: ARG_REPR_LIMIT - 3] + "..."

    try:
        bound = sig.bind_partial(*args, **kwargs).arguments if sig is not None else None
    except TypeError:
        bound = None
    if bound is None:
        bound = {**{f"arg{i}": a for i, a in enumerate(args)}, **kwargs}
    return orjson.dumps({k: short(v) for k, v in bound.items()}).decode()


class _Call:
    """One traced invocation. Created and used on the caller's thread/task; methods never raise."""

    __slots__ = ("spec", "span", "ctx", "last")

    def __init__(self, spec: _Spec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.spec, self.span, self.ctx, self.last = spec, None, None, None
        # Popped first and unconditionally (``kwargs`` is the wrapper's own dict): the wrapped
        # function must never get it, even if starting the span fails below.
        trace_ref = kwargs.pop(TRACE_ID_KWARG, None)
        try:
            attrs = dict(spec.attrs)
            parent, note = trace_context(trace_ref)
            if note is not None:
                attrs[TRACE_REF_ATTR] = note
            if spec.capture_args:
                attrs["telemetry.args"] = _args_attr(spec.signature, args, kwargs)
            self.span = _tracer().start_span(spec.name, context=parent, kind=spec.kind, attributes=attrs)
            self.ctx = trace_api.set_span_in_context(self.span)
        except Exception:
            log.debug("traced: could not start a span", exc_info=True)

    def attach(self) -> object | None:
        if self.ctx is None:
            return None
        try:
            return context_api.attach(self.ctx)
        except Exception:
            return None

    @staticmethod
    def detach(token: object | None) -> None:
        if token is not None:
            try:
                context_api.detach(token)  # type: ignore[arg-type]
            except Exception:
                log.debug("traced: detach failed", exc_info=True)

    def saw(self, item: Any) -> None:
        """A generator yielded ``item``; streaming APIs put usage on the last chunk."""
        if _get(item, "usage") is not None or _get(item, "usage_metadata") is not None:
            self.last = item

    def ok(self, result: Any, finished: bool = True) -> None:
        span = self.span
        if span is None:
            return
        try:
            attrs = usage_attributes(result if self.last is None else self.last)
            if self.spec.cost_calculator is not None and (finished or self.last is not None):
                try:
                    cost = self.spec.cost_calculator(result if self.last is None else self.last)
                    if isinstance(cost, (int, float)) and not isinstance(cost, bool) and math.isfinite(cost) \
                            and cost >= 0:
                        attrs["gen_ai.usage.cost"] = float(cost)
                except Exception as exc:
                    attrs["telemetry.cost_error"] = _error_type(exc)
            if attrs:
                span.set_attributes(attrs)
        except Exception:
            log.debug("traced: could not read usage", exc_info=True)
        self._end()

    def error(self, exc: BaseException) -> None:
        span = self.span
        if span is None:
            return
        try:
            span.set_attribute("error.type", _error_type(exc))
            span.record_exception(exc, escaped=True)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:512]))
        except Exception:
            log.debug("traced: could not record the error", exc_info=True)
        self._end()

    def closed(self) -> None:
        """The consumer closed a generator before it was exhausted: not a failure."""
        if self.span is not None:
            with contextlib.suppress(Exception):
                self.span.set_attribute("telemetry.closed_early", True)
        self.ok(None, finished=False)  # no cost_calculator(None) for an abandoned stream

    def _end(self) -> None:
        try:
            self.span.end()  # type: ignore[union-attr]
        except Exception:
            log.debug("traced: could not end the span", exc_info=True)
        self.span = None


class _Spec:
    __slots__ = ("name", "kind", "attrs", "cost_calculator", "capture_args", "signature")

    def __init__(self, fn: Callable[..., Any], name: str | None, agent_name: str | None, event_type: str,
                 operation: str | None, model: str | None, provider: str | None,
                 cost_calculator: Callable[[Any], float] | None, capture_args: bool,
                 attributes: Mapping[str, Any] | None) -> None:
        self.name = name or getattr(fn, "__qualname__", None) or repr(fn)
        op = operation or OPERATIONS.get(event_type)
        self.kind = SpanKind.CLIENT if op == "chat" else SpanKind.INTERNAL
        attrs: dict[str, Any] = {"telemetry.event": event_type,
                                 "code.function.name": getattr(fn, "__qualname__", self.name)}
        if agent_name:
            attrs["gen_ai.agent.name"] = agent_name
        if op:
            attrs["gen_ai.operation.name"] = op
        if op == "execute_tool":
            attrs["gen_ai.tool.name"] = getattr(fn, "__name__", self.name)
        if model:
            attrs["gen_ai.request.model"] = model
        if provider:
            attrs["gen_ai.provider.name"] = provider
        attrs.update(attributes or {})
        self.attrs = attrs
        self.cost_calculator = cost_calculator
        self.capture_args = capture_args
        try:
            self.signature: inspect.Signature | None = inspect.signature(fn) if capture_args else None
        except (TypeError, ValueError):
            self.signature = None


def traced(
    func: F | None = None,
    /,
    *,
    agent_name: str | None = None,
    event_type: str = "function_call",
    name: str | None = None,
    operation: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    cost_calculator: Callable[[Any], float] | None = None,
    capture_args: bool = False,
    attributes: Mapping[str, Any] | None = None,
) -> Any:
    """Trace every call of the decorated function; use as ``@traced`` or ``@traced(...)``.

    ``event_type`` goes to ``telemetry.event`` (the row's ``event`` column); ``model_call``,
    ``tool_call`` and ``agent_call`` also set ``gen_ai.operation.name`` (chat / execute_tool /
    invoke_agent; ``operation`` overrides). ``model``/``provider`` name the requested model and
    provider up front, so failed calls are attributed too. ``cost_calculator(result) -> USD``
    becomes ``gen_ai.usage.cost`` (it wins over the collector's price table); its exceptions are
    swallowed and noted in ``telemetry.cost_error``. ``capture_args=True`` records the arguments
    as ``telemetry.args`` (JSON of truncated reprs) — off by default, arguments may be private.

    Callers may pass ``_trace_id=`` (M1's ``child_function(_trace_id=trace_id)``): the wrapper
    removes it before calling the function and starts the span in that trace
    (:func:`trace_context`).

    Generators: the span covers the whole iteration and ends when the generator is exhausted,
    raises, or is closed (``telemetry.closed_early``); usage is read from the last item that
    carries one. A generator that is never finished nor closed leaves its span unended.
    """
    def decorate(fn: F) -> F:
        spec = _Spec(fn, name, agent_name, event_type, operation, model, provider, cost_calculator,
                     capture_args, attributes)
        if inspect.isasyncgenfunction(fn):
            wrapper: Callable[..., Any] = _wrap_async_gen(fn, spec)
        elif inspect.isgeneratorfunction(fn):
            wrapper = _wrap_gen(fn, spec)
        elif inspect.iscoroutinefunction(fn):
            wrapper = _wrap_async(fn, spec)
        else:
            wrapper = _wrap_sync(fn, spec)
        return functools.wraps(fn)(wrapper)  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate


def _wrap_sync(fn: Callable[..., Any], spec: _Spec) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = _Call(spec, args, kwargs)
        token = call.attach()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            call.detach(token)
            call.error(exc)
            raise
        call.detach(token)
        call.ok(result)
        return result
    return wrapper


def _wrap_async(fn: Callable[..., Any], spec: _Spec) -> Callable[..., Any]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = _Call(spec, args, kwargs)
        token = call.attach()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            call.detach(token)
            call.error(exc)
            raise
        call.detach(token)
        call.ok(result)
        return result
    return wrapper


def _wrap_gen(fn: Callable[..., Any], spec: _Spec) -> Callable[..., Any]:
    # The span's context is attached only while the inner generator runs, never across a yield,
    # so the consumer's own spans between items are not made children of this one.
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = _Call(spec, args, kwargs)
        token = call.attach()
        try:
            gen = fn(*args, **kwargs)
        except BaseException as exc:
            call.detach(token)
            call.error(exc)
            raise
        call.detach(token)
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            token = call.attach()
            try:
                if thrown is not None:
                    exc_in, thrown = thrown, None
                    item = gen.throw(exc_in)
                else:
                    item = gen.send(sent)
            except StopIteration as stop:
                call.detach(token)
                call.ok(stop.value)
                return stop.value
            except BaseException as exc:
                call.detach(token)
                call.error(exc)
                raise
            call.detach(token)
            call.saw(item)
            try:
                sent = yield item
            except GeneratorExit:
                token = call.attach()
                try:
                    gen.close()
                except BaseException as exc:
                    call.detach(token)
                    call.error(exc)
                    raise
                call.detach(token)
                call.closed()
                raise
            except BaseException as exc:  # thrown in by the consumer: pass it on
                thrown = exc
    return wrapper


def _wrap_async_gen(fn: Callable[..., Any], spec: _Spec) -> Callable[..., Any]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = _Call(spec, args, kwargs)
        token = call.attach()
        try:
            agen = fn(*args, **kwargs)
        except BaseException as exc:
            call.detach(token)
            call.error(exc)
            raise
        call.detach(token)
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            token = call.attach()
            try:
                if thrown is not None:
                    exc_in, thrown = thrown, None
                    item = await agen.athrow(exc_in)
                else:
                    item = await agen.asend(sent)
            except StopAsyncIteration:
                call.detach(token)
                call.ok(None)
                return
            except BaseException as exc:
                call.detach(token)
                call.error(exc)
                raise
            call.detach(token)
            call.saw(item)
            try:
                sent = yield item
            except GeneratorExit:
                token = call.attach()
                try:
                    await agen.aclose()
                except BaseException as exc:
                    call.detach(token)
                    call.error(exc)
                    raise
                call.detach(token)
                call.closed()
                raise
            except BaseException as exc:
                thrown = exc
    return wrapper
