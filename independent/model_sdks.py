"""The official OpenAI and Anthropic Python SDKs, pointed at Portcullis's model routes.

Run by the integration test `models.rs` (crates/portcullis/tests/it/models.rs):

    python model_sdks.py GATEWAY_URL TENANT AGENT_TOKEN SCENARIO [ARG]

and prints one JSON object: what the SDK returned (text, token usage, request id) or the
typed error it raised (class, HTTP status, message). The test checks it against what the
fake provider on loopback recorded.
"""

import json
import sys

import anthropic
import openai


def openai_client(base, tenant, token):
    return openai.OpenAI(base_url=f"{base}/t/{tenant}/v1", api_key=token, max_retries=0)


def anthropic_client(base, tenant, token):
    return anthropic.Anthropic(base_url=f"{base}/t/{tenant}", api_key=token, max_retries=0)


def run(base, tenant, token, scenario, arg):
    if scenario == "openai":
        reply = openai_client(base, tenant, token).chat.completions.create(
            model=arg["model"], messages=[{"role": "user", "content": arg["prompt"]}], **arg.get("extra", {})
        )
        return {
            "text": reply.choices[0].message.content,
            "usage": [reply.usage.prompt_tokens, reply.usage.completion_tokens],
            "id": reply.id,
        }
    if scenario == "openai_stream":
        stream = openai_client(base, tenant, token).chat.completions.create(
            model=arg["model"], messages=[{"role": "user", "content": arg["prompt"]}], stream=True
        )
        text, chunks, usage = "", 0, None
        for chunk in stream:
            chunks += 1
            if chunk.usage is not None:
                usage = [chunk.usage.prompt_tokens, chunk.usage.completion_tokens]
            for choice in chunk.choices:
                text += choice.delta.content or ""
        return {"text": text, "chunks": chunks, "usage": usage}
    if scenario == "anthropic":
        reply = anthropic_client(base, tenant, token).messages.create(
            model=arg["model"], max_tokens=64, messages=[{"role": "user", "content": arg["prompt"]}]
        )
        return {
            "text": "".join(b.text for b in reply.content if b.type == "text"),
            "usage": [reply.usage.input_tokens, reply.usage.output_tokens],
            "id": reply.id,
        }
    if scenario == "anthropic_stream":
        client = anthropic_client(base, tenant, token)
        with client.messages.stream(
            model=arg["model"], max_tokens=64, messages=[{"role": "user", "content": arg["prompt"]}]
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        return {"text": text, "usage": [final.usage.input_tokens, final.usage.output_tokens]}
    if scenario == "openai_models":
        return {"models": [m.id for m in openai_client(base, tenant, token).models.list()]}
    if scenario == "anthropic_models":
        return {"models": [m.id for m in anthropic_client(base, tenant, token).models.list()]}
    raise SystemExit(f"unknown scenario {scenario}")


def main():
    base, tenant, token, scenario = sys.argv[1:5]
    arg = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    try:
        out = run(base, tenant, token, scenario, arg)
    except (openai.APIStatusError, anthropic.APIStatusError) as e:
        out = {"error": type(e).__name__, "status": e.status_code, "message": str(e)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
