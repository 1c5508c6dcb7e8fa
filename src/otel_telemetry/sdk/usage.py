"""Token usage from LLM client responses → current OTel ``gen_ai.usage.*`` attributes.

Reads OpenAI (chat and responses API), Anthropic, Gemini and LangChain shapes, as dicts or
objects. Pure functions, called on the app's thread by ``traced``: no I/O, never raise for odd
objects (attribute access errors are swallowed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def get_field(obj: Any, name: str) -> Any:
    """``obj[name]`` for a mapping, else ``getattr(obj, name, None)``; None on any error."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return None
    return int(value)


def _has(obj: Any, name: str) -> bool:
    if isinstance(obj, Mapping):
        return name in obj
    try:
        return hasattr(obj, name)
    except Exception:
        return False


def usage_attributes(result: Any) -> dict[str, Any]:
    """``gen_ai.usage.*`` / ``gen_ai.response.*`` attributes from a response object or dict.

    OTel semantics: input includes cache tokens, output includes reasoning tokens. Anthropic's
    ``usage`` reports cache tokens beside ``input_tokens``, so they are added in; Gemini reports
    thoughts beside the candidates, so they are added to the output.
    """
    attrs: dict[str, Any] = {}
    usage = get_field(result, "usage")
    gemini = False
    if usage is None:
        usage = get_field(result, "usage_metadata")  # Gemini and LangChain
        gemini = usage is not None and _has(usage, "prompt_token_count")
    if usage is not None:
        inp = out = total = cache_read = cache_write = reasoning = None
        if gemini:
            inp, out = _int(get_field(usage, "prompt_token_count")), _int(get_field(usage, "candidates_token_count"))
            total = _int(get_field(usage, "total_token_count"))
            cache_read = _int(get_field(usage, "cached_content_token_count"))
            reasoning = _int(get_field(usage, "thoughts_token_count"))
            if reasoning:
                out = (out or 0) + reasoning
        else:
            inp = _int(get_field(usage, "input_tokens"))
            if inp is None:
                inp = _int(get_field(usage, "prompt_tokens"))
            out = _int(get_field(usage, "output_tokens"))
            if out is None:
                out = _int(get_field(usage, "completion_tokens"))
            total = _int(get_field(usage, "total_tokens"))
            in_details = get_field(usage, "prompt_tokens_details") or get_field(usage, "input_tokens_details")
            out_details = get_field(usage, "completion_tokens_details") or get_field(usage, "output_tokens_details")
            cache_read = _int(get_field(in_details, "cached_tokens"))
            reasoning = _int(get_field(out_details, "reasoning_tokens"))
            lc_in, lc_out = get_field(usage, "input_token_details"), get_field(usage, "output_token_details")
            if lc_in is not None:  # LangChain usage_metadata (totals already inclusive)
                cache_read = _int(get_field(lc_in, "cache_read"))
                cache_write = _int(get_field(lc_in, "cache_creation"))
            if lc_out is not None:
                reasoning = _int(get_field(lc_out, "reasoning"))
            if _has(usage, "cache_read_input_tokens") or _has(usage, "cache_creation_input_tokens"):
                cache_read = _int(get_field(usage, "cache_read_input_tokens"))  # Anthropic: disjoint
                cache_write = _int(get_field(usage, "cache_creation_input_tokens"))
                if inp is not None:
                    inp += (cache_read or 0) + (cache_write or 0)
        for key, value in (("input_tokens", inp), ("output_tokens", out), ("total_tokens", total),
                           ("cache_read.input_tokens", cache_read), ("cache_creation.input_tokens", cache_write),
                           ("reasoning.output_tokens", reasoning)):
            if value is not None:
                attrs[f"gen_ai.usage.{key}"] = value
    model = get_field(result, "model") or get_field(result, "model_version")
    if isinstance(model, str) and model:
        attrs["gen_ai.response.model"] = model
    rid = get_field(result, "id")
    if isinstance(rid, str) and rid and attrs:
        attrs["gen_ai.response.id"] = rid
    return attrs


