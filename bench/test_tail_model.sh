#!/bin/bash
# test_tail_model.sh -- bench/tail_model.py gives the exact floor probabilities
# docs/BENCHMARKS.md quotes, a modelled end no lower than its floor, and a
# clear error (exit 2, no traceback) for garbage arguments.
# Usage: test_tail_model.sh /path/to/tail_model.py
set -u
M=${1:?usage: $0 tail_model.py}
FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }

out=$(python3 "$M" --orders 20000 100000 --rate 1e12 --runs 3 --seed 7) || fail "model exited $?"
grep -q 'N =   20000: k=2 100.0 %  k=3  96.8 %  k=4  17.3 %  k=5   1.0 %' <<<"$out" ||
  fail "N=20000 floor probabilities: $out"
grep -q 'N =  100000: k=2 100.0 %  k=3 100.0 %  k=4  61.4 %  k=5   5.1 %' <<<"$out" ||
  fail "N=100000 floor probabilities: $out"
# a client that takes no time still waits out the unluckiest chain: >= 2 s
end=$(awk '/N =   20000, first attempts at no time/ {print $(NF-1)}' <<<"$out")
python3 -c "import sys; sys.exit(0 if float('$end') >= 2.0 else 1)" 2>/dev/null ||
  fail "modelled end at no time is '$end', below the 2 s every N=20000 run draws"

# the queued model: both orders of work, and no end before the server could
# have made one attempt per order (2,000 orders at 1,000 attempts/s: 2 s)
out=$(python3 "$M" --orders 2000 --rate 1e12 --runs 2 --queue-rate 1000) || fail "queue model exited $?"
line=$(grep 'N =    2000,     1000 attempts/s: retries behind the backlog' <<<"$out") ||
  fail "no queued end: $out"
read -r back first < <(awk '{print $(NF-3), $NF}' <<<"$line" | tr -d ,)
python3 -c "import sys; sys.exit(0 if float('$back') >= 2.0 and float('$first') >= 2.0 else 1)" \
  2>/dev/null || fail "queued ends '$back' / '$first' below 2 s: $line"

for bad in "--orders -1" "--orders x" "--rate 0" "--rate nan" "--rate inf" "--runs 0" "--nope" \
    "--orders" "--queue-rate 0" "--queue-rate -5" "--queue-rate nan" "--queue-rate inf" \
    "--queue-rate x" "--queue-rate"; do
  # shellcheck disable=SC2086
  err=$(python3 "$M" $bad 2>&1 >/dev/null); rc=$?
  [ "$rc" -eq 2 ] || fail "'$bad': exit $rc, want 2"
  grep -q 'Traceback' <<<"$err" && fail "'$bad': traceback: $err"
  grep -q 'error:' <<<"$err" || fail "'$bad': no error message: $err"
done

if [ "$FAILS" -eq 0 ]; then echo "ok - tail_model"; exit 0; fi
exit 1
