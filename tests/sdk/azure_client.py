"""The official openai SDK's AzureOpenAI client against Sluice: a deployment's chat, streamed.

usage: azure_client.py ENDPOINT TOKEN [--expect-auth-error]   (prints one JSON object)
"""
import json
import sys

import openai

endpoint, token = sys.argv[1], sys.argv[2]
client = openai.AzureOpenAI(
    azure_endpoint=endpoint, api_key=token, api_version="2024-10-21", max_retries=0, timeout=20
)
messages = [{"role": "user", "content": "hello"}]

if "--expect-auth-error" in sys.argv:
    try:
        client.chat.completions.create(model="team-gpt", messages=messages)
    except openai.AuthenticationError as e:
        print(json.dumps({"error": type(e).__name__, "status": e.status_code}))
        sys.exit(0)
    sys.exit("expected openai.AuthenticationError")

out = {}
chat = client.chat.completions.create(model="team-gpt", messages=messages)
out["chat"] = chat.choices[0].message.content
text, usage = "", None
for chunk in client.chat.completions.create(
    model="team-gpt", messages=messages, stream=True, stream_options={"include_usage": True}
):
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if chunk.usage:
        usage = chunk.usage.completion_tokens
out["stream"], out["stream_usage"] = text, usage
print(json.dumps(out))
