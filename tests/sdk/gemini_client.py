"""The official google-genai SDK against Sluice: generate_content and a streamed answer.

usage: gemini_client.py BASE_URL TOKEN [--expect-auth-error]   (prints one JSON object)
"""
import json
import sys

from google import genai
from google.genai import errors, types

base_url, token = sys.argv[1], sys.argv[2]
client = genai.Client(
    api_key=token,
    http_options=types.HttpOptions(base_url=base_url, api_version="v1beta", timeout=20_000),
)

if "--expect-auth-error" in sys.argv:
    try:
        client.models.generate_content(model="gemini-mock", contents="hello")
    except errors.ClientError as e:
        print(json.dumps({"error": type(e).__name__, "code": e.code, "status": e.status}))
        sys.exit(0)
    sys.exit("expected google.genai.errors.ClientError")

out = {}
answer = client.models.generate_content(model="gemini-mock", contents="hello")
out["text"] = answer.text
out["usage"] = answer.usage_metadata.candidates_token_count
text, usage = "", None
for chunk in client.models.generate_content_stream(model="gemini-mock", contents="hello"):
    text += chunk.text or ""
    if chunk.usage_metadata:
        usage = chunk.usage_metadata.candidates_token_count
out["stream"], out["stream_usage"] = text, usage
print(json.dumps(out))
