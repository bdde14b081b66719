"""Drives a running `streamer serve` with Ollama's own Python client (what
Home Assistant's Ollama integration is built on) and prints what came back
as one JSON object; the Rust test judges it."""

import json
import sys

import httpx
from ollama import Client, ResponseError

from common import SNAPSHOT_TOOL, TOOL_PROMPT, TRIAGE_PROMPT, TRIAGE_SCHEMA

base = sys.argv[1]
client = Client(host=base, timeout=600)
out = {}

out["version"] = httpx.get(base + "/api/version", timeout=60).json()
out["tags"] = [m.model for m in client.list().models]
model = out["tags"][0]
show = client.show(model)
out["show"] = {"capabilities": list(show.capabilities or []), "family": show.details.family}

r = client.chat(
    model=model,
    messages=[{"role": "user", "content": "Reply with one word: hello"}],
    options={"temperature": 0, "num_predict": 16},
)
out["chat"] = {
    "content": r.message.content,
    "done": r.done,
    "done_reason": r.done_reason,
    "prompt_eval_count": r.prompt_eval_count,
    "eval_count": r.eval_count,
}

parts = list(
    client.chat(
        model=model,
        messages=[{"role": "user", "content": "Count from one to five."}],
        options={"temperature": 0, "num_predict": 24},
        stream=True,
    )
)
reference = client.chat(
    model=model,
    messages=[{"role": "user", "content": "Count from one to five."}],
    options={"temperature": 0, "num_predict": 24},
)
out["stream"] = {
    "unstreamed": reference.message.content,
    "lines": len(parts),
    "content": "".join(p.message.content or "" for p in parts),
    "last_done": parts[-1].done,
    "eval_count": parts[-1].eval_count,
}

r = client.chat(
    model=model,
    messages=[{"role": "user", "content": TOOL_PROMPT}],
    tools=[SNAPSHOT_TOOL],
    options={"temperature": 0, "num_predict": 96},
)
out["tool"] = {
    "calls": [
        {"name": c.function.name, "arguments": dict(c.function.arguments)}
        for c in (r.message.tool_calls or [])
    ]
}

r = client.chat(
    model=model,
    messages=[{"role": "user", "content": TRIAGE_PROMPT}],
    format=TRIAGE_SCHEMA,
    options={"temperature": 0, "num_predict": 96},
)
out["format"] = json.loads(r.message.content)

try:
    client.chat(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    out["unknown_model"] = {"status": 200}
except ResponseError as e:
    out["unknown_model"] = {"status": e.status_code, "error": e.error}

print(json.dumps(out))
