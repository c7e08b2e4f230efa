"""The official openai SDK against Sluice: chat, streamed chat, Responses API, models.

usage: openai_client.py BASE_URL TOKEN [--expect-auth-error]   (prints one JSON object)
"""
import json
import sys

import openai

base_url, token = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key=token, max_retries=0, timeout=20)
messages = [{"role": "user", "content": "hello"}]

if "--expect-auth-error" in sys.argv:
    try:
        client.chat.completions.create(model="gpt-mock", messages=messages)
    except openai.AuthenticationError as e:
        print(json.dumps({"error": type(e).__name__, "status": e.status_code}))
        sys.exit(0)
    sys.exit("expected openai.AuthenticationError")

out = {}
chat = client.chat.completions.create(model="gpt-mock", messages=messages)
out["chat"] = chat.choices[0].message.content
out["chat_usage"] = chat.usage.completion_tokens

text, usage = "", None
for chunk in client.chat.completions.create(
    model="gpt-mock", messages=messages, stream=True, stream_options={"include_usage": True}
):
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if chunk.usage:
        usage = chunk.usage.completion_tokens
out["stream"], out["stream_usage"] = text, usage

resp = client.responses.create(model="gpt-mock", input="hello")
out["responses"] = resp.output_text

usage = None
for event in client.responses.create(model="gpt-mock", input="hello", stream=True):
    if event.type == "response.completed":
        usage = event.response.usage.output_tokens
out["responses_stream_usage"] = usage

out["models"] = len(client.models.list().data)
print(json.dumps(out))
