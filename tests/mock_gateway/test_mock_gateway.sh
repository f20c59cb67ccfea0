#!/bin/bash
# test_mock_gateway.sh -- contract and robustness test for faka-mock-gateway.
#
# Usage: test_mock_gateway.sh /path/to/faka-mock-gateway
# Starts the binary on port 0, reads its "listening" line, checks the gateway
# contract, the control API and the webhook receiver with curl, then feeds it
# garbage over raw /dev/tcp connections (random bytes, truncated requests,
# huge headers, oversized bodies, bad JSON, bad percent-encodings, pipelined
# and abandoned connections) and checks that it still answers. Ends with
# SIGTERM and requires exit status 0.
#
# MOCK_GW_WRAP: optional command prefix for the binary, e.g.
#   MOCK_GW_WRAP="valgrind --error-exitcode=99 --leak-check=full" ...
# Needs bash, curl, openssl (CLI, for the webhook HMAC), coreutils.
set -u

BIN=${1:?usage: $0 /path/to/faka-mock-gateway}
SECRET=s3cret
TMP=$(mktemp -d)
PID=
FAILS=0
CHECKS=0

cleanup() {
    if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then kill -KILL "$PID"; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
# check DESC GOT WANT
check() {
    CHECKS=$((CHECKS + 1))
    if [[ "$2" == "$3" ]]; then echo "ok - $1"; else fail "$1: got [$2], want [$3]"; fi
}
# check_match DESC GOT REGEX
check_match() {
    CHECKS=$((CHECKS + 1))
    if [[ "$2" =~ $3 ]]; then echo "ok - $1"; else fail "$1: [$2] does not match /$3/"; fi
}

# --- start ---------------------------------------------------------------
# shellcheck disable=SC2086
${MOCK_GW_WRAP:-} "$BIN" --port 0 --webhook-secret "$SECRET" --seed 7 \
    >"$TMP/stdout" 2>"$TMP/stderr" &
PID=$!
for _ in $(seq 1 300); do
    grep -q '^listening ' "$TMP/stdout" 2>/dev/null && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
done
LINE=$(head -n1 "$TMP/stdout")
if [[ ! $LINE =~ ^listening\ 127\.0\.0\.1:([0-9]+)$ ]]; then
    echo "FAIL: no listening line (got '$LINE')"; cat "$TMP/stderr"; exit 1
fi
PORT=${BASH_REMATCH[1]}
B=http://127.0.0.1:$PORT
echo "# server pid $PID port $PORT"

# req METHOD PATH [curl args] -> "CODE BODY"
req() {
    local m=$1 p=$2; shift 2
    curl -s -m 10 -X "$m" "$B$p" -w ' %{http_code}' "$@" | awk '{c=$NF; $NF=""; sub(/ $/,""); print c" "$0}'
}
# post_charge KEY BODY -> "CODE BODY"
post_charge() { req POST /charges -H "Idempotency-Key: $1" --data-binary "$2"; }
ctl() { req POST "$1" --data-binary "$2" >/dev/null; }
alive() { check "server alive after $1" "$(req GET /_health)" '200 {"status":"ok"}'; }
ledger() { curl -s -m 10 "$B/_ledger"; }
# field JSON NAME -> the number after "NAME": (first match)
field() { grep -o "\"$2\":[0-9]*" <<<"$1" | head -n1 | cut -d: -f2; }

# raw FILE [TIMEOUT] -> first line of the answer to FILE's bytes, sent on a
# fresh connection: the status line, CLOSED (EOF), or SILENT (no answer).
raw() {
    local file=$1 t=${2:-3}
    (
        trap '' PIPE
        exec 3<>"/dev/tcp/127.0.0.1/$PORT" || { echo CONNECT_FAILED; exit; }
        cat "$file" >&3 2>/dev/null
        if IFS= read -r -t "$t" line <&3; then echo "${line%$'\r'}"
        else rc=$?; if ((rc > 128)); then echo SILENT; else echo CLOSED; fi; fi
        exec 3>&-
    )
}

# --- gateway contract ------------------------------------------------------
ctl /_reset ''
check "charge succeeds" "$(post_charge k1 '{"order_id":"A1","amount":3000,"currency":"CNY","buyer":"b@x"}')" \
    '200 {"id":"ch_1","status":"succeeded"}'
check "replay returns the recorded charge" \
    "$(post_charge k1 '{"order_id":"A1","amount":3000,"currency":"CNY"}')" '200 {"id":"ch_1","status":"succeeded"}'
check "same key, other amount: conflict" \
    "$(post_charge k1 '{"order_id":"A1","amount":3001,"currency":"CNY"}')" '409 {"status":"conflict"}'
check "same key, other order: conflict" \
    "$(post_charge k1 '{"order_id":"A2","amount":3000,"currency":"CNY"}')" '409 {"status":"conflict"}'
check "same key, other currency: conflict" \
    "$(post_charge k1 '{"order_id":"A1","amount":3000,"currency":"USD"}')" '409 {"status":"conflict"}'
check "missing Idempotency-Key: 400" "$(req POST /charges --data-binary '{"order_id":"A1","amount":1}' | cut -c1-3)" 400
check "missing amount: 422" "$(post_charge k2 '{"order_id":"A1"}' | cut -c1-3)" 422
check "fractional amount: 422" "$(post_charge k2 '{"order_id":"A1","amount":1.5}' | cut -c1-3)" 422
check "string amount: 422" "$(post_charge k2 '{"order_id":"A1","amount":"1"}' | cut -c1-3)" 422
check "numeric order_id: 422" "$(post_charge k2 '{"order_id":1,"amount":1}' | cut -c1-3)" 422
check "truncated JSON: 400" "$(post_charge k2 '{"order_id":"A1","amount":1' | cut -c1-3)" 400
check "trailing garbage after JSON: 400" "$(post_charge k2 '{"order_id":"A1","amount":1} x' | cut -c1-3)" 400
check "JSON array body: 400" "$(post_charge k2 '[1,2]' | cut -c1-3)" 400
check "GET recorded charge" "$(req GET /charges/k1)" '200 {"id":"ch_1","status":"succeeded"}'
check "GET unknown key: 404" "$(req GET /charges/nope)" '404 {"status":"not_found"}'
check "GET key that never got an outcome: 404" "$(req GET /charges/k2 | cut -c1-3)" 404
post_charge 'a/b c' '{"order_id":"X","amount":1}' >/dev/null
post_charge 'o:1/2' '{"order_id":"O12","amount":5}' >/dev/null
check "GET percent-encoded key" "$(req GET /charges/o%3A1%2F2)" '200 {"id":"ch_2","status":"succeeded"}'
post_charge esc1 '{"order_id":"q\"\\\n\u0001é","amount":1}' >/dev/null
check_match "ledger escapes order_id" "$(ledger)" '"order_id":"q\\"\\\\\\u000a\\u0001é"'
check "HEAD: 405" "$(curl -s -m 5 -I -o /dev/null -w '%{http_code}' "$B/_health")" 405
check "key with a space is rejected" "$(post_charge 'a b' '{"order_id":"X","amount":1}' | cut -c1-3)" 400
for bad in '%zz' '%' '%4' '%4g' 'a%00b' '%20' ; do
    check "GET /charges/$bad: 400" "$(req GET "/charges/$bad" | cut -c1-3)" 400
done
check "unknown path: 404" "$(req GET /nope | cut -c1-3)" 404
check "wrong method: 405" "$(req DELETE /charges | cut -c1-3)" 405

# --- scripted outcomes -----------------------------------------------------
ctl /_script '{"key":"s1","outcomes":["503","lost","ok"]}'
check "script 503" "$(post_charge s1 '{"order_id":"S1","amount":10}' | cut -c1-3)" 503
curl -s -m 5 -X POST "$B/charges" -H 'Idempotency-Key: s1' --data-binary '{"order_id":"S1","amount":10}' >/dev/null
check "script lost: connection closed without answer (curl 52)" "$?" 52
R=$(post_charge s1 '{"order_id":"S1","amount":10}')
check_match "script ok after lost: the charge that was lost" "$R" '^200 \{"id":"ch_[0-9]+","status":"succeeded"\}$'
L=$(ledger)
check_match "ledger entry s1: one charge, three posts" "$L" '"s1":\{"id":"ch_[0-9]+","order_id":"S1","amount":10,"currency":"","status":"succeeded","charges":1,"posts":3,"gets":0,"throttled":0\}'

ctl /_script '{"key":"s2","outcomes":["429"]}'
H=$(curl -s -m 5 -i -X POST "$B/charges" -H 'Idempotency-Key: s2' --data-binary '{"order_id":"S2","amount":1}' | tr -d '\r')
check_match "429 carries Retry-After: 1" "$H" 'HTTP/1.1 429.*Retry-After: 1'
check "ledger: max_throttled counts the 429" "$(field "$(ledger)" max_throttled)" 1
ctl /_script '{"key":"s2b","outcomes":["429","503","429","429","ok"]}'
for _ in 1 2 3 4 5; do post_charge s2b '{"order_id":"S2b","amount":1}' >/dev/null; done
L=$(ledger)
check_match "ledger entry s2b: three 429s among five posts" "$L" '"s2b":\{[^}]*"posts":5,"gets":0,"throttled":3\}'
check "ledger: max_throttled is the most one key got" "$(field "$L" max_throttled)" 3
ctl /_script '{"key":"s3","outcomes":["decline"]}'
check "script decline: 402" "$(post_charge s3 '{"order_id":"S3","amount":1}')" '402 {"status":"declined","reason":"insufficient_funds"}'
check "declined replays as declined" "$(post_charge s3 '{"order_id":"S3","amount":1}' | cut -c1-3)" 402
check_match "GET declined" "$(req GET /charges/s3)" '^200 \{"id":"ch_[0-9]+","status":"declined"'
ctl /_script '{"key":"s4","outcomes":["risk"]}'
check "script risk: 403" "$(post_charge s4 '{"order_id":"S4","amount":1}')" '403 {"status":"risk_rejected","reason":"risk_score"}'
ctl /_script '{"key":"s5","outcomes":["garbage"]}'
check "script garbage: 200 non-JSON" "$(post_charge s5 '{"order_id":"S5","amount":1}')" '200 <html>oops'
check_match "garbage recorded a succeeded charge" "$(post_charge s5 '{"order_id":"S5","amount":1}')" '^200 \{"id":"ch_[0-9]+","status":"succeeded"\}$'
ctl /_script '{"key":"s6","outcomes":["reset","500","invalid"]}'
curl -s -m 5 -X POST "$B/charges" -H 'Idempotency-Key: s6' --data-binary '{"order_id":"S6","amount":1}' >/dev/null
RC=$?
check_match "script reset: connection reset (curl 56 or 52)" "$RC" '^(56|52)$'
check "script 500" "$(post_charge s6 '{"order_id":"S6","amount":1}' | cut -c1-3)" 500
check "script invalid: 422" "$(post_charge s6 '{"order_id":"S6","amount":1}' | cut -c1-3)" 422
check "reset/500/invalid recorded nothing" "$(req GET /charges/s6 | cut -c1-3)" 404
check "unknown script outcome: 400" "$(req POST /_script --data-binary '{"key":"s7","outcomes":["nope"]}' | cut -c1-3)" 400

ctl /_faults '{"pending_ms":300}'
ctl /_script '{"key":"p1","outcomes":["pending"]}'
check_match "script pending: 202" "$(post_charge p1 '{"order_id":"P1","amount":1}')" '^202 \{"id":"ch_[0-9]+","status":"pending"\}$'
check_match "GET while pending" "$(req GET /charges/p1)" '"status":"pending"'
sleep 0.4
check_match "GET after pending_ms: succeeded" "$(req GET /charges/p1)" '"status":"succeeded"'
ctl /_faults '{"pending_ms":100,"pending_then":"declined"}'
ctl /_script '{"key":"p2","outcomes":["pending"]}'
check "pending_then declined: 202 first" "$(post_charge p2 '{"order_id":"P2","amount":1}' | cut -c1-3)" 202
sleep 0.2
check "pending_then declined: replay 402" "$(post_charge p2 '{"order_id":"P2","amount":1}' | cut -c1-3)" 402

ctl /_faults '{"timeout_ms":500}'
ctl /_script '{"key":"t1","outcomes":["timeout"]}'
T0=$(date +%s%N)
curl -s -m 5 -X POST "$B/charges" -H 'Idempotency-Key: t1' --data-binary '{"order_id":"T1","amount":1}' >/dev/null
RC=$?
T1=$(date +%s%N)
check "timeout: no answer, closed after timeout_ms (curl 52)" "$RC" 52
check_match "timeout held the connection ~500 ms" "$(( (T1 - T0) / 1000000 ))" '^(4[5-9][0-9]|[5-9][0-9][0-9]|1[0-9][0-9][0-9])$'

# --- outage, latency -----------------------------------------------------------
ctl /_reset ''
ctl /_outage '{"ms":400,"mode":"503"}'
check "outage: POST 503" "$(post_charge o1 '{"order_id":"O1","amount":1}' | cut -c1-3)" 503
check "outage: GET 503" "$(req GET /charges/o1 | cut -c1-3)" 503
sleep 0.5
check "after outage: POST 200" "$(post_charge o1 '{"order_id":"O1","amount":1}' | cut -c1-3)" 200
ctl /_outage '{"ms":5000,"mode":"reset"}'
curl -s -m 5 "$B/charges/o1" >/dev/null
check_match "reset outage: GET reset" "$?" '^(56|52)$'
ctl /_outage '{"ms":0}'
check "outage ended with ms 0" "$(req GET /charges/o1 | cut -c1-3)" 200
check "bad outage mode: 400" "$(req POST /_outage --data-binary '{"ms":1,"mode":"garbage"}' | cut -c1-3)" 400

ctl /_faults '{"latency_ms":300}'
T0=$(date +%s%N)
PIDS=()
for i in 1 2 3 4 5; do post_charge "lat$i" '{"order_id":"L","amount":1}' >"$TMP/lat$i" & PIDS+=($!); done
wait "${PIDS[@]}"
T1=$(date +%s%N)
MS=$(( (T1 - T0) / 1000000 ))
check_match "latency applied without blocking the loop (5 x 300 ms in parallel took ${MS} ms)" "$MS" '^(2[89][0-9]|[3-9][0-9][0-9]|1[0-4][0-9][0-9])$'
check "latency request answered" "$(cut -c1-3 "$TMP/lat3")" 200
ctl /_faults '{"latency_ms":0}'

# --- fault validation, probabilistic faults, reproducibility ------------------
check "unknown fault field: 400" "$(req POST /_faults --data-binary '{"p_timout":0.1}' | cut -c1-3)" 400
check "probability above 1: 400" "$(req POST /_faults --data-binary '{"p_503":1.5}' | cut -c1-3)" 400
check "transient sum above 1: 400" "$(req POST /_faults --data-binary '{"p_503":0.6,"p_500":0.6}' | cut -c1-3)" 400
check "rejected update changed nothing" "$(curl -s "$B/_faults" | grep -o '"p_503":[0-9.]*')" '"p_503":0'

run_random() {   # run_random TAG -> codes of 60 POSTs, faults on
    ctl /_reset '{"seed":99}'
    ctl /_faults '{"p_503":0.2,"p_500":0.1,"p_429":0.1,"p_garbage":0.1,"p_decline":0.2,"p_risk":0.1}'
    local out=""
    for i in $(seq 1 60); do
        out+="$(post_charge "r$((i % 20))" "{\"order_id\":\"R$((i % 20))\",\"amount\":7}" | cut -c1-3) "
    done
    echo "$out"
}
A=$(run_random a)
Bq=$(run_random b)
check "same seed, same requests: same outcomes" "$A" "$Bq"
check_match "random faults produce a mix" "$A" '503.*'
L=$(ledger)
check "no double charges under random faults" "$(field "$L" double_charges)" 0
check "no order charged twice" "$(field "$L" double_charged_orders)" 0
ctl /_reset ''

# --- webhooks ----------------------------------------------------------------
sig() { printf '%s.%s' "$1" "$2" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1; }
hook() {   # hook BODY [SIG-OVERRIDE]
    local ts body=$1 s
    ts=$(date +%s%3N)
    s=${2:-v1=$(sig "$ts" "$body")}
    req POST /webhook -H "X-Faka-Timestamp: $ts" -H "X-Faka-Signature: $s" --data-binary "$body" | cut -c1-3
}
check "webhook signed: 200" "$(hook '{"order_id":"A1","codes":["c1","c2"]}')" 200
check "webhook duplicate: 200" "$(hook '{"order_id":"A1","codes":["c1","c2"]}')" 200
check "webhook other codes: 200" "$(hook '{"order_id":"A1","codes":["c9"]}')" 200
check "webhook bad signature: 401" "$(hook '{"order_id":"A2","codes":[]}' v1=0000)" 401
check "webhook missing signature: 401" \
    "$(req POST /webhook --data-binary '{"order_id":"A2"}' | cut -c1-3)" 401
check "webhook signature over other body: 401" \
    "$(hook '{"order_id":"A2","codes":[]}' "v1=$(sig 1 other)")" 401
check "webhook without order_id: 400" "$(hook '{"codes":[]}')" 400
W=$(curl -s "$B/_webhooks")
check_match "webhook log" "$W" '^\{"received":3,"rejected":3,"invalid":1,"failed":0,"duplicates":2,"code_mismatches":1,"distinct_orders":1,"orders":\{"A1":\{"count":3,"codes":\["c1","c2"\],"mismatches":1\}\}\}$'
ctl /_faults '{"p_webhook_fail":1}'
check "p_webhook_fail 1: 500" "$(hook '{"order_id":"A3","codes":[]}')" 500
ctl /_reset ''

# --- HTTP: keep-alive, pipelining, 100-continue, chunked -------------------------
CONNS=$(curl -s -o /dev/null -o /dev/null -o /dev/null -w '%{num_connects} ' "$B/_health" "$B/_health" "$B/_health")
check "keep-alive: three requests, one connection" "$CONNS" "1 0 0 "
printf 'POST /charges HTTP/1.1\r\nHost: x\r\nIdempotency-Key: pl1\r\nContent-Length: 27\r\n\r\n{"order_id":"P","amount":1}GET /charges/pl1 HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >"$TMP/pipe"
OUT=$( (exec 3<>"/dev/tcp/127.0.0.1/$PORT"; cat "$TMP/pipe" >&3; timeout 5 cat <&3) | grep -ao 'HTTP/1\.1 [0-9][0-9][0-9]' | tr '\n' ' ')
check "pipelined answers in order" "$OUT" "HTTP/1.1 200 HTTP/1.1 200 HTTP/1.1 404 "
head -c 3000 /dev/zero | tr '\0' 'x' >"$TMP/pad"
printf '{"order_id":"E1","amount":1,"buyer":"%s"}' "$(cat "$TMP/pad")" >"$TMP/big.json"
T=$(curl -s -o /dev/null -m 5 -w '%{http_code} %{time_total}' -X POST "$B/charges" -H 'Idempotency-Key: e1' -H 'Expect: 100-continue' --data-binary @"$TMP/big.json")
check_match "Expect: 100-continue answered at once" "$T" '^200 0\.[0-8]'
check "chunked request body" "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$B/charges" -H 'Idempotency-Key: ch1' -H 'Transfer-Encoding: chunked' --data-binary '{"order_id":"C1","amount":2}')" 200
head -c $((1024 * 1024 + 10)) /dev/zero | tr '\0' ' ' >"$TMP/huge"
check "body over 1 MiB: 413" "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$B/charges" -H 'Idempotency-Key: h1' --data-binary @"$TMP/huge")" 413
{ printf '{"order_id":"M1","amount":1}'; head -c $((1024 * 1024 - 40)) /dev/zero | tr '\0' ' '; } >"$TMP/mib"
check "body just under 1 MiB accepted" "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$B/charges" -H 'Idempotency-Key: m1' --data-binary @"$TMP/mib")" 200
printf 'GET /_health HTTP/1.0\r\n\r\n' >"$TMP/h10"
check "HTTP/1.0 request" "$(raw "$TMP/h10")" "HTTP/1.1 200 OK"

# --- garbage -----------------------------------------------------------------
gar() { printf "$2" >"$TMP/g"; check_match "garbage: $1" "$(raw "$TMP/g")" "${3:-^(HTTP/1.1 400 Bad Request|CLOSED)$}"; }
gar "binary request line" '\x00\x01\x02\xff\xfe\r\n\r\n'
gar "unknown method" 'FOO / HTTP/1.1\r\n\r\n'
gar "no version" 'GET /_health\r\n\r\n'
gar "bad version" 'GET /_health HTTP/x.1\r\n\r\n'
gar "LF only request line junk" 'GET\n\n'
gar "space in header name" 'GET /_health HTTP/1.1\r\nBad Header: x\r\n\r\n'
gar "NUL in header value" 'GET /_health HTTP/1.1\r\nX: a\x00b\r\n\r\n'
gar "bad content-length" 'POST /charges HTTP/1.1\r\nContent-Length: abc\r\n\r\n'
gar "two content-lengths" 'POST /charges HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab'
gar "CL and chunked" 'POST /charges HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'
gar "bad chunk size" 'POST /charges HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n'
gar "content-length over 1 MiB" 'POST /charges HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n' '^HTTP/1.1 413 '
gar "upgrade" 'GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n'
gar "CONNECT" 'CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n'
gar "duplicate Idempotency-Key" 'POST /charges HTTP/1.1\r\nIdempotency-Key: a\r\nIdempotency-Key: b\r\nContent-Length: 2\r\n\r\n{}' '^HTTP/1.1 400 '
gar "absolute-form URL without path" 'GET http://x HTTP/1.1\r\n\r\n' '^HTTP/1.1 (400|404) '
gar "asterisk URL" 'OPTIONS * HTTP/1.1\r\n\r\n' '^HTTP/1.1 (400|404|405) '
{ printf 'GET /_health HTTP/1.1\r\nX-Big: '; head -c 100000 /dev/zero | tr '\0' 'a'; printf '\r\n\r\n'; } >"$TMP/g"
check_match "garbage: 100 kB header" "$(raw "$TMP/g")" '^(HTTP/1.1 400 Bad Request|CLOSED)$'
{ printf 'GET /_health HTTP/1.1\r\n'; for i in $(seq 1 10000); do printf 'X-H%d: v\r\n' "$i"; done; printf '\r\n'; } >"$TMP/g"
check_match "garbage: 10000 headers" "$(raw "$TMP/g")" '^(HTTP/1.1 400 Bad Request|CLOSED)$'
{ printf 'GET /'; head -c 20000 /dev/zero | tr '\0' 'a'; printf ' HTTP/1.1\r\n\r\n'; } >"$TMP/g"
check_match "garbage: 20 kB URL" "$(raw "$TMP/g")" '^(HTTP/1.1 400 Bad Request|CLOSED)$'
{ printf 'POST /charges HTTP/1.1\r\nIdempotency-Key: '; head -c 3000 /dev/zero | tr '\0' 'k'; printf '\r\nContent-Length: 2\r\n\r\n{}'; } >"$TMP/g"
check_match "garbage: 3 kB idempotency key" "$(raw "$TMP/g")" '^HTTP/1.1 400 '
for body in '' 'null' '"x"' '{' '{"order_id":' '{"order_id":"\ud800","amount":1}' \
            '{"order_id":"'$'\xff\xfe''","amount":1}' '{"order_id":"a","amount":1e400}' \
            '{"order_id":"a","amount":-1}' '{"order_id":"a","amount":1e17}' \
            "$(printf '%.0s[' $(seq 1 3000))" '{"order_id":"","amount":1}'; do
    printf 'POST /charges HTTP/1.1\r\nIdempotency-Key: gj\r\nContent-Length: %d\r\nConnection: close\r\n\r\n' "$(printf '%s' "$body" | wc -c)" >"$TMP/g"
    printf '%s' "$body" >>"$TMP/g"
    check_match "bad JSON body ${body:0:24}" "$(raw "$TMP/g")" '^HTTP/1.1 (400|422) '
done
for i in $(seq 1 40); do
    head -c $((RANDOM % 3000 + 1)) /dev/urandom >"$TMP/g"
    R=$(raw "$TMP/g" 1)
    [[ $R =~ ^(HTTP/1.1\ 4[0-9][0-9]\ .*|CLOSED|SILENT)$ ]] || fail "random bytes $i: $R"
done
CHECKS=$((CHECKS + 1)); echo "ok - 40 random byte blobs"
for i in $(seq 1 20); do    # random bytes after a valid request line and header
    { printf 'POST /charges HTTP/1.1\r\nContent-Length: 50\r\n'; head -c 200 /dev/urandom; } >"$TMP/g"
    raw "$TMP/g" 1 >/dev/null
done
alive "random bytes"
# truncated requests, then the peer goes away
for cut in 5 17 30 45 60 70; do
    printf 'POST /charges HTTP/1.1\r\nIdempotency-Key: tr\r\nContent-Length: 27\r\n\r\n{"order_id":"T","amount":1}' | head -c "$cut" >"$TMP/g"
    raw "$TMP/g" 0.2 >/dev/null
done
alive "truncated requests"
# many abandoned connections at once
PIDS=()
for i in $(seq 1 100); do
    ( exec 3<>"/dev/tcp/127.0.0.1/$PORT"; printf 'GET /_heal' >&3; sleep 0.3 ) 2>/dev/null &
    PIDS+=($!)
done
wait "${PIDS[@]}"
alive "100 abandoned connections"
S=$(curl -s "$B/_stats")
check_match "stats count bad requests" "$S" '"bad_requests":[1-9]'
# many concurrent requests
ctl /_reset ''
PIDS=()
for i in $(seq 1 100); do post_charge "cc$i" '{"order_id":"CC","amount":1}' >/dev/null & PIDS+=($!); done
wait "${PIDS[@]}"
L=$(ledger)
check "100 concurrent POSTs recorded" "$(field "$L" keys)" 100
check "one order over 100 keys is seen as charged twice" "$(field "$L" double_charged_orders)" 1
check "per-key double charges stay 0" "$(field "$L" double_charges)" 0

# --- shutdown -------------------------------------------------------------------
kill -TERM "$PID"
wait "$PID"
RC=$?
PID=
check "SIGTERM: exit 0" "$RC" 0
if [[ -s $TMP/stderr ]]; then
    echo "# server stderr:"; sed 's/^/#   /' "$TMP/stderr"
fi

echo "# $CHECKS checks, $FAILS failures"
[[ $FAILS -eq 0 ]]
