"""GenAI normalisation and cost: golden rows through the real ``schema`` mapping, exact
arithmetic against the bundled table, overrides, unknown models, and the schema upgrade."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from otel_telemetry.collector import mapping
from otel_telemetry.collector.genai import normalise as genai
from otel_telemetry.collector.genai import prices
from otel_telemetry.store import schema

T0 = 1_700_000_000_000_000_000
TRACE, SPAN = bytes.fromhex("0af7651916cd43dd8448eb211c80319c"), bytes.fromhex("b7ad6b7169203331")


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    genai.reset_unknown()
    prices.set_price_overrides(None)
    yield
    genai.reset_unknown()
    prices.set_price_overrides(None)


def _row(attrs: dict[str, Any], name: str = "chat gpt-4o") -> dict[str, Any]:
    rec = (name, TRACE, SPAN, None, T0, T0 + 1_250_000_000, 2, 0, None, attrs, None, None, "llm.client", "1.0")
    [row] = mapping.rows_from_batch("span", {"service.name": "svc"}, [rec], None, b"base")
    assert len(row) == len(schema.COLUMNS)
    return dict(zip(schema.COLUMNS, row, strict=True))


def _table_prices(provider: str, model_id: str) -> dict[str, Any]:
    """Read the bundled table directly (not through the matcher under test)."""
    [entry] = [pr for p in prices.PROVIDERS if p["id"] == provider
               for mid, _, pr in p["models"] if mid == model_id]
    return entry


# One chat call with 1200 prompt tokens (1000 from the cache), 300 completion tokens (100 reasoning).
CURRENT = {
    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 300,
    "gen_ai.usage.cache_read.input_tokens": 1000, "gen_ai.usage.reasoning.output_tokens": 100,
}
LEGACY = {
    "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.usage.prompt_tokens": 1200, "gen_ai.usage.completion_tokens": 300, "llm.usage.total_tokens": 1500,
    "gen_ai.usage.cache_read_input_tokens": 1000, "gen_ai.usage.reasoning_tokens": 100,
}
OPENINFERENCE = {
    "openinference.span.kind": "LLM", "llm.provider": "openai", "llm.system": "openai",
    "llm.model_name": "gpt-4o-2024-08-06", "llm.token_count.prompt": "1200", "llm.token_count.completion": 300,
    "llm.token_count.total": 1500, "llm.token_count.prompt_details.cache_read": 1000,
    "llm.token_count.completion_details.reasoning": 100,
}


def test_golden_same_call_in_three_conventions() -> None:
    rows = [_row(a) for a in (CURRENT, LEGACY, OPENINFERENCE)]
    norm = [tuple(r[c] for c in genai.GENAI_COLUMNS) for r in rows]
    p = _table_prices("openai", "gpt-4o")
    assert (p["input"], p["cache_read"], p["output"]) == (2.5, 1.25, 10)
    # uncached input 200 at input price, 1000 at the cache price, 300 output (reasoning billed as output)
    expected_cost = (200 * p["input"] + 1000 * p["cache_read"] + 300 * p["output"]) / 1_000_000
    golden = ("gpt-4o-2024-08-06", "openai", None, 1200, 300, 1000, None, 100, 1500, pytest.approx(expected_cost))
    assert norm[0] == norm[1] == norm[2] == golden
    assert expected_cost == pytest.approx(0.00475, rel=1e-12)
    # every other column agrees too, except the raw attributes and the rule-derived subcategory
    rest = [{k: v for k, v in r.items() if k not in ("data", "subcategory")} for r in rows]
    assert rest[0] == rest[1] == rest[2]
    assert rows[0]["duration_ms"] == 1250.0 and rows[0]["category"] == "ai_behavior"
    assert genai.unknown_models() == {}


def test_cache_tokens_priced_separately_exact() -> None:
    p = _table_prices("anthropic", "claude-3-5-sonnet")
    assert p == {"input": 3, "cache_write": 3.75, "cache_read": 0.3, "output": 15}
    attrs = {"gen_ai.provider.name": "anthropic", "gen_ai.response.model": "claude-3-5-sonnet-20241022",
             "gen_ai.usage.input_tokens": 10_000, "gen_ai.usage.output_tokens": 500,
             "gen_ai.usage.cache_read.input_tokens": 6_000, "gen_ai.usage.cache_creation.input_tokens": 3_000}
    r = _row(attrs)
    expected = (1_000 * 3 + 6_000 * 0.3 + 3_000 * 3.75 + 500 * 15) / 1_000_000  # 0.02355
    assert r["cost_usd"] == pytest.approx(expected, rel=1e-12)
    assert r["cost_usd"] == pytest.approx(0.02355, rel=1e-12)
    naive = (10_000 * 3 + 500 * 15) / 1_000_000  # all input at the full price: the classic mistake
    assert r["cost_usd"] < naive
    assert (r["input_tokens"], r["cache_read_tokens"], r["cache_write_tokens"], r["total_tokens"]) == (
        10_000, 6_000, 3_000, 10_500)


def test_disjoint_cache_buckets_are_added_to_input() -> None:
    # Anthropic's raw usage (input_tokens excludes the cache) under OTel names: parts > whole.
    r = _row({"gen_ai.response.model": "claude-3-5-sonnet-20241022", "gen_ai.usage.input_tokens": 50,
              "gen_ai.usage.output_tokens": 20, "gen_ai.usage.cache_read.input_tokens": 1000})
    assert (r["input_tokens"], r["cache_read_tokens"], r["total_tokens"]) == (1050, 1000, 1070)
    assert r["cost_usd"] == pytest.approx((50 * 3 + 1000 * 0.3 + 20 * 15) / 1e6, rel=1e-12)
    assert r["provider"] == "anthropic"  # inferred from the table when the producer gave none


def test_producer_cost_wins() -> None:
    for key in ("gen_ai.usage.cost", "llm.cost.total", "telemetry.cost_usd"):
        r = _row({**CURRENT, key: 0.123})
        assert r["cost_usd"] == 0.123
    r = _row({"gen_ai.request.model": "in-house-llm", "gen_ai.usage.input_tokens": 5, "gen_ai.usage.cost": 0.5})
    assert r["cost_usd"] == 0.5 and genai.unknown_models() == {}  # priced by the producer: not unknown


def test_unknown_model_null_cost_and_counted() -> None:
    for _ in range(3):
        r = _row({"gen_ai.request.model": "in-house-llm-7b", "gen_ai.usage.input_tokens": 100,
                  "gen_ai.usage.output_tokens": 10})
        assert r["cost_usd"] is None and r["model"] == "in-house-llm-7b" and r["input_tokens"] == 100
    _row({"gen_ai.usage.input_tokens": 7})  # usage without any model name
    _row({"gen_ai.request.model": "in-house-llm-7b"})  # no usage: nothing to price, not counted
    assert genai.unknown_models() == {"in-house-llm-7b": 3, "(unset)": 1}
    # a model the table knows but without a price for a token kind it used → NULL, not partial
    r = _row({"gen_ai.request.model": "text-embedding-3-small", "gen_ai.provider.name": "openai",
              "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 10})
    assert r["cost_usd"] is None


def test_price_overrides() -> None:
    prices.set_price_overrides({
        "in-house-llm-7b": {"input_per_mtok": 1, "output_per_mtok": 2, "cache_read_per_mtok": 0.1},
        "gpt-4o": {"output_per_mtok": 20},  # only output changes; the rest from the table
    })
    r = _row({"gen_ai.request.model": "in-house-llm-7b", "gen_ai.usage.input_tokens": 1_000,
              "gen_ai.usage.output_tokens": 100, "gen_ai.usage.cache_read.input_tokens": 400})
    assert r["cost_usd"] == pytest.approx((600 * 1 + 400 * 0.1 + 100 * 2) / 1e6, rel=1e-12)
    r = _row(CURRENT)  # "gpt-4o-2024-08-06" finds the "gpt-4o" override through date normalisation
    assert r["cost_usd"] == pytest.approx((200 * 2.5 + 1000 * 1.25 + 300 * 20) / 1e6, rel=1e-12)
    assert genai.unknown_models() == {}
    for bad in ({"m": {"input": 1}}, {"m": {"input_per_mtok": -1}}, {"m": {"input_per_mtok": "x"}}, {"": {}}):
        with pytest.raises(ValueError):
            prices.set_price_overrides(bad)  # type: ignore[arg-type]


def test_reasoning_price_and_tiers() -> None:
    p = {"input": {"base": 1.0, "tiers": [[200_000, 2.0]]}, "output": 10.0, "reasoning": 5.0}
    assert prices.cost(p, 1_000, 300, None, None, 100) == pytest.approx((1_000 * 1 + 200 * 10 + 100 * 5) / 1e6)
    assert prices.cost(p, 250_000, 0, None, None, None) == pytest.approx(250_000 * 2.0 / 1e6)
    assert prices.cost({"input": 1.0}, 10, 5, None, None, None) is None  # output used, no output price


@pytest.mark.parametrize(("name", "provider", "expected"), [
    ("gpt-4o", None, "gpt-4o"),
    ("gpt-4o-2024-08-06", None, "gpt-4o"),
    ("openai/gpt-4o-mini", None, "gpt-4o-mini"),
    ("GPT-4o-mini-2024-07-18", "openai", "gpt-4o-mini"),
    ("claude-3-5-sonnet-20241022", "anthropic", "claude-3-5-sonnet"),
    ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", None, "claude-3-5-sonnet"),
    ("claude-opus-4-1@20250805", "gcp.vertex_ai", "claude-opus-4-1"),
])
def test_model_name_matching(name: str, provider: str | None, expected: str) -> None:
    hit = prices.lookup(name, provider)
    assert hit is not None and hit[0] == expected


def test_non_genai_rows_have_null_genai_columns() -> None:
    r = _row({"http.request.method": "GET"}, name="GET /")
    assert all(r[c] is None for c in genai.GENAI_COLUMNS)
    metric = ("m", None, "1", "gauge", T0, None, 1.0, {}, {}, "s", None)
    log = (T0, T0, 9, "INFO", "hi", {}, None, None, None, "s", None)
    for kind, rec in (("metric", metric), ("log", log)):
        [row] = mapping.rows_from_batch(kind, {}, [rec], None, b"b")
        assert len(row) == len(schema.COLUMNS) and row[-len(genai.GENAI_COLUMNS):] == genai.EMPTY
    # odd values never fail the batch
    r = _row({"gen_ai.usage.input_tokens": "lots", "gen_ai.usage.output_tokens": -3, "gen_ai.request.model": ["m"],
              "gen_ai.usage.cost": "NaN"})
    assert (r["model"], r["input_tokens"], r["output_tokens"], r["cost_usd"]) == ("m", None, None, None)


def test_old_database_is_upgraded(tmp_path: Path) -> None:
    old_ddl = schema.DDL.split("metadata TEXT NOT NULL")[0] + "metadata TEXT NOT NULL);"  # first release
    db = str(tmp_path / "old.db")
    conn = apsw.Connection(db)
    conn.execute(old_ddl)
    old_cols = [c for c in schema.COLUMNS if c not in genai.GENAI_COLUMNS]
    conn.execute(f"INSERT INTO records({', '.join(old_cols)}) VALUES ({', '.join('?' * len(old_cols))})",
                 tuple(b"u" if c == "uid" else 1 if c == "timestamp" else "x" for c in old_cols))
    schema.apply_ddl(conn)
    schema.apply_ddl(conn)  # idempotent
    row = _row(CURRENT)
    conn.execute(f"INSERT INTO records({', '.join(schema.COLUMNS)}) VALUES ({', '.join('?' * len(schema.COLUMNS))})",
                 tuple(row[c] for c in schema.COLUMNS))
    got = list(conn.execute("SELECT model, cost_usd FROM records ORDER BY id"))
    assert got == [(None, None), ("gpt-4o-2024-08-06", pytest.approx(0.00475))]
    plan = " ".join(str(r) for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT sum(cost_usd) FROM records WHERE model = 'x' AND timestamp > 0"))
    assert "records_model" in plan
    conn.close()
