#!/bin/sh
# Sums automake's test-suite.log totals into the one line CI reads:
# "N passed, N failed".  A build that failed before its tests ran (no log)
# counts as one failure, so a broken build can never look green.
status=$1
shift
pass=0
fail=0
for log in "$@"; do
    if [ ! -f "$log" ]; then
        echo "missing $log: the build or test run did not complete"
        fail=$((fail + 1))
        continue
    fi
    p=$(sed -n 's/^# PASS: *//p' "$log" | head -1)
    f=$(sed -n 's/^# FAIL: *//p' "$log" | head -1)
    e=$(sed -n 's/^# ERROR: *//p' "$log" | head -1)
    x=$(sed -n 's/^# XPASS: *//p' "$log" | head -1)
    # A skipped test is neither passed nor failed: name it, so a skip that
    # should not happen is seen.
    sed -n 's/^SKIP: /skipped (see its .log): /p' "$log"
    pass=$((pass + ${p:-0}))
    fail=$((fail + ${f:-0} + ${e:-0} + ${x:-0}))
    [ "${f:-0}${e:-0}" != "00" ] && sed -n '/^FAIL\|^ERROR/p' "$log"
done
[ "$status" -ne 0 ] && [ "$fail" -eq 0 ] && fail=1
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
