"""The baseline of the read benchmark: a bare FastAPI endpoint returning a constant."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/constant")
async def constant() -> dict[str, str]:
    return {"status": "ok"}
