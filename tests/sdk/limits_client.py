"""The official SDKs meeting Sluice's limits: a 429 must be the SDK's RateLimitError, carry the
provider's rate-limit headers, and steer the SDK's own retries.

usage: limits_client.py BASE_URL TOKEN MODE   (prints one JSON object)
  openai-until-429 [--stream] [--no-usage]  calls until refused (at most 20; no retries)
  anthropic-until-429 [--stream]            the same with the anthropic SDK
  openai-retry N                            N calls with the SDK's default retries (2)
  openai-once                               one call with the SDK's default retries
"""
import json
import sys

base_url, token, mode = sys.argv[1], sys.argv[2], sys.argv[3]
stream = "--stream" in sys.argv
messages = [{"role": "user", "content": "hello"}]
HEADERS = ("retry-after", "retry-after-ms", "x-sluice-error", "x-should-retry")


def refused(e, prefix):
    headers = {k: v for k, v in e.response.headers.items()
               if k in HEADERS or k.startswith(prefix)}
    return {"error": type(e).__name__, "status": e.status_code,
            "headers": headers, "body": e.response.json()}


if mode == "openai-until-429":
    import openai
    client = openai.OpenAI(base_url=base_url, api_key=token, max_retries=0, timeout=20)
    out = {"admitted": 0}
    for _ in range(20):
        try:
            if stream:
                options = None if "--no-usage" in sys.argv else {"include_usage": True}
                for _chunk in client.chat.completions.create(
                    model="gpt-mock", messages=messages, stream=True, stream_options=options
                ):
                    pass
            else:
                client.chat.completions.create(model="gpt-mock", messages=messages)
            out["admitted"] += 1
        except openai.RateLimitError as e:
            out.update(refused(e, "x-ratelimit-"))
            break
    print(json.dumps(out))
elif mode == "anthropic-until-429":
    import anthropic
    client = anthropic.Anthropic(base_url=base_url, api_key=token, max_retries=0, timeout=20)
    out = {"admitted": 0}
    for _ in range(20):
        try:
            if stream:
                with client.messages.stream(
                    model="claude-mock", max_tokens=16, messages=messages
                ) as s:
                    s.get_final_message()
            else:
                client.messages.create(model="claude-mock", max_tokens=16, messages=messages)
            out["admitted"] += 1
        except anthropic.RateLimitError as e:
            out.update(refused(e, "anthropic-ratelimit-"))
            break
    print(json.dumps(out))
elif mode == "openai-retry":
    import openai
    client = openai.OpenAI(base_url=base_url, api_key=token, timeout=20)  # default retries
    n = int(sys.argv[4])
    answers = [client.chat.completions.create(model="gpt-mock", messages=messages)
               for _ in range(n)]
    print(json.dumps({"ok": sum(1 for a in answers if a.choices)}))
elif mode == "openai-once":
    import openai
    client = openai.OpenAI(base_url=base_url, api_key=token, timeout=20)  # default retries
    try:
        client.chat.completions.create(model="gpt-mock", messages=messages)
        print(json.dumps({"ok": True}))
    except openai.RateLimitError as e:
        print(json.dumps(refused(e, "x-ratelimit-")))
else:
    sys.exit(f"unknown mode {mode}")
