"""Drives a running `streamer serve` with OpenAI's own Python client and
prints what came back as one JSON object; the Rust test judges it."""

import base64
import json
import sys

import httpx
from openai import APIStatusError, OpenAI

from common import LONG_PROMPT, SNAPSHOT_TOOL, TOOL_PROMPT, TRIAGE_PROMPT, TRIAGE_SCHEMA, png

base = sys.argv[1]
client = OpenAI(base_url=base + "/v1", api_key="not-needed-on-loopback", timeout=600, max_retries=0)
out = {}

out["models"] = [m.id for m in client.models.list().data]
model = out["models"][0]

r = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Reply with one word: hello"}],
    max_tokens=16,
    temperature=0,
    seed=7,
)
out["text"] = {
    "content": r.choices[0].message.content,
    "finish": r.choices[0].finish_reason,
    "usage": r.usage.model_dump(),
}

pieces, usage, finish = [], None, None
for chunk in client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Count from one to five."}],
    max_tokens=24,
    temperature=0,
    stream=True,
    stream_options={"include_usage": True},
):
    if chunk.usage:
        usage = chunk.usage.model_dump()
    for c in chunk.choices:
        if c.delta.content:
            pieces.append(c.delta.content)
        if c.finish_reason:
            finish = c.finish_reason
reference = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Count from one to five."}],
    max_tokens=24,
    temperature=0,
)
out["stream"] = {
    "pieces": len(pieces),
    "content": "".join(pieces),
    "finish": finish,
    "usage": usage,
    "unstreamed": reference.choices[0].message.content,
}

r = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": TOOL_PROMPT}],
    tools=[SNAPSHOT_TOOL],
    temperature=0,
    max_tokens=96,
)
m = r.choices[0].message
out["tool"] = {
    "finish": r.choices[0].finish_reason,
    "calls": [
        {"id": c.id, "name": c.function.name, "arguments": json.loads(c.function.arguments)}
        for c in (m.tool_calls or [])
    ],
}

calls, finish = {}, None
for chunk in client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": TOOL_PROMPT}],
    tools=[SNAPSHOT_TOOL],
    temperature=0,
    max_tokens=96,
    stream=True,
):
    for c in chunk.choices:
        for d in c.delta.tool_calls or []:
            call = calls.setdefault(d.index, {"name": "", "arguments": ""})
            if d.function.name:
                call["name"] += d.function.name
            if d.function.arguments:
                call["arguments"] += d.function.arguments
        if c.finish_reason:
            finish = c.finish_reason
out["tool_stream"] = {
    "finish": finish,
    "calls": [{"name": c["name"], "arguments": json.loads(c["arguments"])} for c in calls.values()],
}

r = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": TRIAGE_PROMPT}],
    response_format={"type": "json_schema", "json_schema": {"name": "triage", "schema": TRIAGE_SCHEMA}},
    temperature=0,
    max_tokens=96,
)
out["json_schema"] = json.loads(r.choices[0].message.content)

image = base64.b64encode(png()).decode()
r = client.chat.completions.create(
    model=model,
    messages=[
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + image}},
            ],
        }
    ],
    max_tokens=8,
)
out["image"] = {"finish": r.choices[0].finish_reason, "prompt_tokens": r.usage.prompt_tokens}


def status_of(call):
    try:
        call()
    except APIStatusError as e:
        return {"status": e.status_code, "body": e.body}
    return {"status": 200}


out["too_long"] = status_of(
    lambda: client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": LONG_PROMPT}], max_tokens=4
    )
)
out["unknown_model"] = status_of(
    lambda: client.chat.completions.create(
        model="no-such-model", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
)
raw = httpx.post(base + "/v1/chat/completions", content=b'{"messages": 7}', timeout=60)
out["malformed"] = {"status": raw.status_code, "body": raw.json()}

print(json.dumps(out))
