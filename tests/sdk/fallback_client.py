"""The official SDKs on a route with a fallback chain: whichever provider answers, the answer
must parse as the client's own API (text, tool calls, stop reason, usage).

usage: fallback_client.py BASE_URL TOKEN MODE MODEL [--stream] [--tools]   (prints one JSON object)
  openai      chat.completions.create with the openai SDK (no retries)
  anthropic   messages.create / messages.stream with the anthropic SDK (no retries)
"""
import json
import sys

base_url, token, mode, model = sys.argv[1:5]
stream = "--stream" in sys.argv
tools = "--tools" in sys.argv
messages = [{"role": "user", "content": "hello"}]


def openai_call():
    import openai
    client = openai.OpenAI(base_url=base_url, api_key=token, max_retries=0, timeout=20)
    kwargs = {"model": model, "messages": [{"role": "system", "content": "Be brief."}] + messages}
    if tools:
        kwargs["tools"] = [{"type": "function", "function": {
            "name": "echo", "description": "Echoes text",
            "parameters": {"type": "object", "properties": {"text": {"type": "string"}}}}}]
    out = {}
    if not stream:
        raw = client.chat.completions.with_raw_response.create(**kwargs)
        c = raw.parse()
        choice = c.choices[0]
        calls = choice.message.tool_calls or []
        out = {"text": choice.message.content, "finish_reason": choice.finish_reason,
               "model": c.model, "tool_calls": [
                   {"name": t.function.name, "arguments": json.loads(t.function.arguments)}
                   for t in calls],
               "usage": c.usage.model_dump() if c.usage else None}
        out["fallback"] = raw.headers.get("x-sluice-fallback")
        return out
    text, finish, usage, chunks, model_seen = "", None, None, 0, None
    calls = {}
    try:
        raw = client.chat.completions.with_raw_response.create(
            stream=True, stream_options={"include_usage": True}, **kwargs)
        out["fallback"] = raw.headers.get("x-sluice-fallback")
        for chunk in raw.parse():
            chunks += 1
            model_seen = chunk.model
            if chunk.usage:
                usage = chunk.usage.model_dump()
            for choice in chunk.choices:
                text += choice.delta.content or ""
                for t in choice.delta.tool_calls or []:
                    call = calls.setdefault(t.index, {"name": "", "arguments": ""})
                    if t.function and t.function.name:
                        call["name"] = t.function.name
                    if t.function and t.function.arguments:
                        call["arguments"] += t.function.arguments
                finish = choice.finish_reason or finish
    except Exception as e:  # a stream cut midway
        out["error"] = type(e).__name__
    out.update({"text": text, "finish_reason": finish, "usage": usage, "chunks": chunks,
                "model": model_seen, "tool_calls": [
                    {"name": c["name"], "arguments": json.loads(c["arguments"] or "{}")}
                    for _, c in sorted(calls.items())]})
    return out


def anthropic_call():
    import anthropic
    client = anthropic.Anthropic(base_url=base_url, api_key=token, max_retries=0, timeout=20)
    kwargs = {"model": model, "max_tokens": 64, "system": "Be brief.", "messages": messages}
    if tools:
        kwargs["tools"] = [{"name": "echo", "description": "Echoes text",
                            "input_schema": {"type": "object",
                                             "properties": {"text": {"type": "string"}}}}]
    out = {}
    if stream:
        with client.messages.stream(**kwargs) as s:
            out["fallback"] = s.response.headers.get("x-sluice-fallback")
            events = [e.type for e in s]
            m = s.get_final_message()
        out["events"] = sorted(set(events))
    else:
        raw = client.messages.with_raw_response.create(**kwargs)
        out["fallback"] = raw.headers.get("x-sluice-fallback")
        m = raw.parse()
    out.update({"model": m.model, "stop_reason": m.stop_reason,
                "content": [b.model_dump() for b in m.content],
                "usage": {"input_tokens": m.usage.input_tokens,
                          "output_tokens": m.usage.output_tokens}})
    return out


print(json.dumps(openai_call() if mode == "openai" else anthropic_call()))
