"""A plain FastAPI service with no OpenTelemetry code: the zero-code test runs it unmodified
under ``opentelemetry-instrument``. ``python fastapi_app.py PORT`` serves on 127.0.0.1:PORT."""

from __future__ import annotations

import logging
import sys

import uvicorn
from fastapi import FastAPI, HTTPException

log = logging.getLogger("shop")
app = FastAPI(title="shop")
ITEMS = {1: "apple", 2: "pear"}


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/items/{item_id}")
def get_item(item_id: int) -> dict[str, object]:
    if item_id not in ITEMS:
        raise HTTPException(status_code=404, detail="no such item")
    log.info("served item %s", item_id)
    return {"id": item_id, "name": ITEMS[item_id]}


@app.get("/boom")
def boom() -> dict[str, str]:
    log.error("boom requested")
    raise RuntimeError("kaboom")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
