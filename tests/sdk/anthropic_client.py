"""The official anthropic SDK against Sluice: messages, streamed messages, both key headers.

usage: anthropic_client.py BASE_URL TOKEN [--expect-auth-error]   (prints one JSON object)
"""
import json
import sys

import anthropic

base_url, token = sys.argv[1], sys.argv[2]
client = anthropic.Anthropic(base_url=base_url, api_key=token, max_retries=0, timeout=20)
messages = [{"role": "user", "content": "hello"}]

if "--expect-auth-error" in sys.argv:
    try:
        client.messages.create(model="claude-mock", max_tokens=64, messages=messages)
    except anthropic.AuthenticationError as e:
        print(json.dumps({"error": type(e).__name__, "status": e.status_code}))
        sys.exit(0)
    sys.exit("expected anthropic.AuthenticationError")

out = {}
msg = client.messages.create(model="claude-mock", max_tokens=64, messages=messages)
out["message"] = msg.content[0].text
out["message_usage"] = msg.usage.output_tokens

with client.messages.stream(model="claude-mock", max_tokens=64, messages=messages) as stream:
    out["stream"] = "".join(stream.text_stream)
    out["stream_usage"] = stream.get_final_message().usage.output_tokens

# Older SDKs and Claude Code send the key as x-api-key instead of Authorization: Bearer.
legacy = anthropic.Anthropic(
    base_url=base_url, api_key=None, max_retries=0, timeout=20,
    default_headers={"X-Api-Key": token},
)
out["x_api_key_message"] = legacy.messages.create(
    model="claude-mock", max_tokens=64, messages=messages
).content[0].text
print(json.dumps(out))
