#!/usr/bin/env bash
# HTTP-level conformance of `ferry serve`: status codes, OpenAI error bodies, SSE framing.
# Uses only curl and python3 (for JSON).
#
# Usage: tests/clients/curl_conformance.sh BASE_URL API_KEY MODEL [OVERLOAD_BASE_URL [OVERLOAD_MODEL]]
#   BASE_URL  e.g. http://127.0.0.1:18090/v1, a server started with --api-key API_KEY and the
#             default --max-body (1 MiB) and a context of at most ~1000 tokens (e.g. stories260K.bin: 512)
#   OVERLOAD_BASE_URL  optional: a second server with the same key started with --parallel 1 --queue 0,
#             on which concurrent requests must get some 503s; best a model slow enough that a
#             400-token reply outlasts the start of 11 more curls (default model: MODEL)
# Prints "ok - ..." per check; the first failure prints "FAIL - ..." and exits 1.
set -euo pipefail

if [[ $# -lt 3 ]]; then
    echo "usage: $0 BASE_URL API_KEY MODEL [OVERLOAD_BASE_URL [OVERLOAD_MODEL]]" >&2
    exit 2
fi
BASE_URL=${1%/}
API_KEY=$2
MODEL=$3
OVERLOAD_URL=${4:-}
OVERLOAD_MODEL=${5:-$MODEL}
ROOT=${BASE_URL%/v1}  # /health lives beside /v1

# Debian's python3 first: a python3 earlier on PATH may be a version manager's
# shim (pyenv's takes 0.4 s to start, and this script starts python about 100
# times, which put it near its test's time limit on a busy machine).
PYTHON=python3
[[ -x /usr/bin/python3 ]] && PYTHON=/usr/bin/python3

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
BODY=$TMP/body
STATUS=

fail() {
    echo "FAIL - $1"
    if [[ -s $BODY ]]; then echo "  status $STATUS, body: $(head -c 600 "$BODY")"; fi
    exit 1
}
ok() { echo "ok - $1"; }

# req METHOD URL [curl args...]: sets STATUS, the body goes to $BODY.
req() {
    local method=$1 url=$2
    shift 2
    : >"$BODY"
    STATUS=$(curl -sS -X "$method" -o "$BODY" -w '%{http_code}' --max-time 60 "$@" "$url") || STATUS="curl-error-$?"
}
auth=(-H "Authorization: Bearer $API_KEY")
json=(-H 'Content-Type: application/json')

# jget EXPR: evaluates a Python expression over the body parsed as JSON (as j); prints the result.
jget() { "$PYTHON" -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$BODY" "$1" 2>/dev/null || echo "<not JSON>"; }

expect_status() {  # expect_status CODE WHAT
    [[ $STATUS == "$1" ]] || fail "$2: expected HTTP $1, got $STATUS"
}
# expect_error CODE WHAT [error.code] [message substring]: the status and an OpenAI error body.
expect_error() {
    local code=$1 what=$2 ecode=${3:-} msg=${4:-}
    expect_status "$code" "$what"
    [[ $(jget 'isinstance(j["error"]["message"], str) and len(j["error"]["message"]) > 0') == True ]] ||
        fail "$what: no error.message string"
    [[ $(jget 'isinstance(j["error"]["type"], str) and len(j["error"]["type"]) > 0') == True ]] ||
        fail "$what: no error.type string"
    [[ $(jget '"param" in j["error"] and "code" in j["error"]') == True ]] || fail "$what: error.param or error.code missing"
    if [[ -n $ecode ]]; then
        [[ $(jget 'j["error"]["code"]') == "$ecode" ]] || fail "$what: expected error.code $ecode"
    fi
    if [[ -n $msg ]]; then
        [[ $(jget 'j["error"]["message"]') == *"$msg"* ]] || fail "$what: error.message should contain '$msg'"
    fi
    ok "$what (HTTP $STATUS, $(jget 'j["error"]["type"]'): $(jget 'j["error"]["message"]' | head -c 100))"
}

# --- health, no key ---
req GET "$ROOT/health"
expect_status 200 "GET /health without a key"
[[ $(jget 'j["status"]') == ok ]] || fail "GET /health: status should be ok"
ok "GET /health without a key (HTTP 200, $(head -c 100 "$BODY"))"

# --- authentication ---
req GET "$BASE_URL/models"
expect_error 401 "GET /v1/models without a key" invalid_api_key
req GET "$BASE_URL/models" -H "Authorization: Bearer $API_KEY-wrong"
expect_error 401 "GET /v1/models with a wrong key" invalid_api_key
req GET "$BASE_URL/models" -H "Authorization: $API_KEY"
expect_error 401 "GET /v1/models with the key but no 'Bearer '" invalid_api_key
req POST "$BASE_URL/chat/completions" "${json[@]}" \
    --data "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":4}"
expect_error 401 "POST /v1/chat/completions without a key" invalid_api_key
req POST "$BASE_URL/completions" "${json[@]}" -H "Authorization: Bearer x$API_KEY" \
    --data "{\"model\":\"$MODEL\",\"prompt\":\"hi\",\"max_tokens\":4}"
expect_error 401 "POST /v1/completions with a wrong key" invalid_api_key

# --- models ---
req GET "$BASE_URL/models" "${auth[@]}"
expect_status 200 "GET /v1/models"
[[ $(jget "j['object'] == 'list' and '$MODEL' in [m['id'] for m in j['data']]") == True ]] ||
    fail "GET /v1/models should list $MODEL"
ok "GET /v1/models lists $MODEL"
req GET "$BASE_URL/models/$MODEL" "${auth[@]}"
expect_status 200 "GET /v1/models/$MODEL"
[[ $(jget 'j["id"]') == "$MODEL" ]] || fail "GET /v1/models/$MODEL: id should be $MODEL"
ok "GET /v1/models/$MODEL"
req GET "$BASE_URL/models/no-such-model" "${auth[@]}"
expect_error 404 "GET /v1/models/no-such-model" model_not_found

# --- 404 ---
req GET "$BASE_URL/no/such/path" "${auth[@]}"
expect_error 404 "GET unknown path"
req POST "$BASE_URL/embeddings" "${auth[@]}" "${json[@]}" --data '{"input":"x"}'
expect_error 404 "POST /v1/embeddings (not served)"
req POST "$BASE_URL/chat/completions" "${auth[@]}" "${json[@]}" \
    --data '{"model":"no-such-model","messages":[{"role":"user","content":"hi"}],"max_tokens":4}'
expect_error 404 "chat with an unknown model" model_not_found
req POST "$BASE_URL/completions" "${auth[@]}" "${json[@]}" \
    --data '{"model":"no-such-model","prompt":"hi","max_tokens":4}'
expect_error 404 "completions with an unknown model" model_not_found

# --- a good request of each kind ---
req POST "$BASE_URL/chat/completions" "${auth[@]}" "${json[@]}" \
    --data "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"Tell me a story\"}],\"temperature\":0,\"max_tokens\":8}"
expect_status 200 "chat completion"
[[ $(jget 'j["choices"][0]["message"]["role"] == "assistant" and j["usage"]["total_tokens"] == j["usage"]["prompt_tokens"] + j["usage"]["completion_tokens"]') == True ]] ||
    fail "chat completion: role assistant and consistent usage"
ok "chat completion (HTTP 200)"
req POST "$BASE_URL/completions" "${auth[@]}" "${json[@]}" \
    --data "{\"model\":\"$MODEL\",\"prompt\":\"Once upon a time\",\"temperature\":0,\"max_tokens\":8}"
expect_status 200 "completion"
[[ $(jget 'isinstance(j["choices"][0]["text"], str) and j["object"] == "text_completion"') == True ]] ||
    fail "completion: a text_completion with text"
ok "completion (HTTP 200)"

# --- 400 ---
req POST "$BASE_URL/chat/completions" "${auth[@]}" "${json[@]}" --data '{"model": "x", "messages": [}'
expect_error 400 "chat: malformed JSON"
req POST "$BASE_URL/completions" "${auth[@]}" "${json[@]}" --data 'not json at all'
expect_error 400 "completions: malformed JSON"
req POST "$BASE_URL/completions" "${auth[@]}" "${json[@]}" --data '["a JSON array"]'
expect_error 400 "completions: a body that is not an object"
req POST "$BASE_URL/chat/completions" "${auth[@]}" "${json[@]}" \
    --data "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":\"x\"}"
expect_error 400 "chat: max_tokens of the wrong type" "" max_tokens
req POST "$BASE_URL/completions" "${auth[@]}" "${json[@]}" \
    --data "{\"model\":\"$MODEL\",\"prompt\":\"hi\",\"temperature\":\"hot\"}"
expect_error 400 "completions: temperature of the wrong type" "" temperature
req POST "$BASE_URL/completions" "${auth[@]}" "${json[@]}" --data "{\"model\":\"$MODEL\",\"prompt\":42}"
expect_error 400 "completions: prompt of the wrong type" "" prompt
req POST "$BASE_URL/chat/completions" "${auth[@]}" "${json[@]}" \
    --data "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":\"yes\"}"
expect_error 400 "chat: stream of the wrong type" "" stream
req POST "$BASE_URL/chat/completions" "${auth[@]}" "${json[@]}" \
    --data "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"frobnicate\":1}"
expect_error 400 "chat: unknown field" "" "Unrecognized request argument supplied: frobnicate"
req POST "$BASE_URL/completions" "${auth[@]}" "${json[@]}" \
    --data "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
expect_error 400 "completions: a chat field (messages) is unknown there" "" "Unrecognized request argument supplied: messages"
printf '{"model":"%s","prompt":"bad \xff\xfe bytes","max_tokens":4}' "$MODEL" >"$TMP/badutf8.json"
req POST "$BASE_URL/completions" "${auth[@]}" "${json[@]}" --data-binary "@$TMP/badutf8.json"
expect_error 400 "completions: invalid UTF-8 in the prompt"
printf '{"model":"%s","messages":[{"role":"user","content":"bad \xc3\x28 bytes"}],"max_tokens":4}' "$MODEL" >"$TMP/badutf8.json"
req POST "$BASE_URL/chat/completions" "${auth[@]}" "${json[@]}" --data-binary "@$TMP/badutf8.json"
expect_error 400 "chat: invalid UTF-8 in a message"
req POST "$BASE_URL/completions" "${auth[@]}" "${json[@]}" \
    --data "{\"model\":\"$MODEL\",\"prompt\":\"lone surrogate \\udcff here\",\"max_tokens\":4}"
expect_error 400 "completions: a lone UTF-16 surrogate escape in the prompt"
long=$("$PYTHON" -c 'print(" ".join(["the little dog ran to the park and played"] * 100))')  # 900 words
req POST "$BASE_URL/completions" "${auth[@]}" "${json[@]}" \
    --data "{\"model\":\"$MODEL\",\"prompt\":\"$long\",\"max_tokens\":4}"
expect_error 400 "completions: a prompt longer than the context" context_length_exceeded
req POST "$BASE_URL/chat/completions" "${auth[@]}" "${json[@]}" \
    --data "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"$long\"}],\"max_tokens\":4}"
expect_error 400 "chat: a message longer than the context" context_length_exceeded
req POST "$BASE_URL/chat/completions" "${auth[@]}" "${json[@]}" --data "{\"model\":\"$MODEL\",\"messages\":[]}"
expect_error 400 "chat: an empty messages array" "" messages
req POST "$BASE_URL/chat/completions" "${auth[@]}" "${json[@]}" --data "{\"model\":\"$MODEL\"}"
expect_error 400 "chat: no messages" "" messages
req POST "$BASE_URL/chat/completions" "${auth[@]}" "${json[@]}" \
    --data "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"n\":2}"
expect_error 400 "chat: n=2 (unsupported)"

# --- 413 ---
"$PYTHON" -c 'import sys; sys.stdout.write("{\"model\":\"%s\",\"prompt\":\"%s\",\"max_tokens\":4}" % (sys.argv[1], "a " * 600000))' "$MODEL" \
    >"$TMP/big.json"  # 1.2 MB
req POST "$BASE_URL/completions" "${auth[@]}" "${json[@]}" --data-binary "@$TMP/big.json"
expect_error 413 "completions: a body over 1 MiB"
req POST "$BASE_URL/chat/completions" "${auth[@]}" "${json[@]}" -H 'Expect:' --data-binary "@$TMP/big.json"
expect_error 413 "chat: a body over 1 MiB (no Expect: 100-continue)"

# --- streaming ---
sse() {  # sse ENDPOINT JSON: streams into $BODY, checks the SSE framing
    local what=$1
    req POST "$BASE_URL/$1" "${auth[@]}" "${json[@]}" -N -D "$TMP/headers" --data "$2"
    expect_status 200 "$what stream"
    grep -qi '^content-type: text/event-stream' "$TMP/headers" || fail "$what stream: Content-Type should be text/event-stream"
    "$PYTHON" - "$BODY" <<'EOF' || fail "$what stream: bad SSE framing"
import json, sys
raw = open(sys.argv[1], encoding="utf-8").read()
assert raw.endswith("data: [DONE]\n\n"), "does not end with 'data: [DONE]\\n\\n': %r" % raw[-80:]
events = [e for e in raw.split("\n\n") if e and not e.startswith(":")]
assert events[-1] == "data: [DONE]", events[-1]
chunks = []
for e in events[:-1]:
    assert e.startswith("data: "), "not a data line: %r" % e
    chunks.append(json.loads(e[len("data: "):]))
assert chunks, "no chunks"
assert not chunks[-1]["choices"] and "usage" in chunks[-1], "the last chunk should be the usage chunk"
assert any(c["choices"] and c["choices"][0]["finish_reason"] in ("stop", "length") for c in chunks), "no finish_reason"
assert len({c["id"] for c in chunks}) == 1, "chunks should share one id"
EOF
    ok "$what stream: text/event-stream, data: chunks, usage chunk, ends with 'data: [DONE]'"
}
sse chat/completions "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"Tell me a story\"}],\"temperature\":0,\"max_tokens\":10,\"stream\":true,\"stream_options\":{\"include_usage\":true}}"
sse completions "{\"model\":\"$MODEL\",\"prompt\":\"Once upon a time\",\"temperature\":0,\"max_tokens\":10,\"stream\":true,\"stream_options\":{\"include_usage\":true}}"
req POST "$BASE_URL/completions" "${json[@]}" -N \
    --data "{\"model\":\"$MODEL\",\"prompt\":\"hi\",\"max_tokens\":4,\"stream\":true}"
expect_error 401 "streaming request without a key"
req POST "$BASE_URL/completions" "${auth[@]}" "${json[@]}" -N \
    --data "{\"model\":\"$MODEL\",\"prompt\":\"$long\",\"max_tokens\":4,\"stream\":true}"
expect_error 400 "streaming request with a prompt longer than the context: a plain error, not a stream" context_length_exceeded

# --- 503 (optional: a server with --parallel 1 --queue 0) ---
if [[ -n $OVERLOAD_URL ]]; then
    OVERLOAD_URL=${OVERLOAD_URL%/}
    for i in $(seq 1 12); do
        curl -sS -o "$TMP/ov$i" -w '%{http_code}\n' --max-time 120 "${auth[@]}" "${json[@]}" \
            --data "{\"model\":\"$OVERLOAD_MODEL\",\"prompt\":\"Once upon a time\",\"temperature\":0,\"max_tokens\":400}" \
            "$OVERLOAD_URL/completions" >"$TMP/ov$i.status" 2>&1 &
    done
    wait
    codes=$(sort "$TMP"/ov*.status | uniq -c | awk '{printf "%s%s x%s", (NR > 1 ? ", " : ""), $2, $1}')
    n503=0
    for i in $(seq 1 12); do
        if [[ $(cat "$TMP/ov$i.status") == 503 ]]; then
            n503=$((n503 + 1))
            cp "$TMP/ov$i" "$BODY"
            STATUS=503
        fi
    done
    [[ $n503 -gt 0 ]] || fail "12 concurrent requests to a --parallel 1 --queue 0 server: expected some 503, got: $codes"
    [[ $(grep -c '^200$' "$TMP"/ov*.status | awk -F: '{s+=$NF} END {print s}') -gt 0 ]] ||
        fail "12 concurrent requests to a --parallel 1 --queue 0 server: expected some 200, got: $codes"
    expect_error 503 "overloaded server: 503 ($codes)" overloaded
fi

echo "all curl checks passed"
