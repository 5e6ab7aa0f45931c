#!/usr/bin/env bash
# Hostile-input rerun of the rational-approx command line (issue 12, rational_approx items): one line per input with
# the exit status, the number of tracebacks (must be 0), the lines on stderr (1 for a refusal) and "strict" when a
# --json output parses with a strict JSON parser. Run from the repository root: bash benchmarks/hostile_rational_approx_cli.sh
tmp=$(mktemp)
run() { out=$(timeout 300 python3 -m rational_approx "$@" 2>"$tmp"); rc=$?; err=$(cat "$tmp"); tb=$(grep -c Traceback "$tmp"); nl=$(printf "%s" "$err" | grep -c ''); js=""; if [[ " $* " == *" --json "* ]] && [ $rc -eq 0 ]; then js=$(printf "%s" "$out" | python3 -c "import sys,json; json.loads(sys.stdin.read(), parse_constant=lambda t: (_ for _ in ()).throw(ValueError(t))); print('strict')" 2>&1 | tail -1); fi; echo "rc=$rc tb=$tb errlines=$nl $js | $* | ${err:0:150}"; }
run fit --target abs --type x,y
run fit --type=-1,2
run fit --type 4,4 --domain=
run fit --type 4,4 --domain=-1e200,1e200
run fit --type 4,4 --domain=-1e300,1e300 --symmetry none --json
run fit --type 4,4 --maxiter 0
run fit --type 4,4 --maxiter -1
run fit --target heaviside --type 30,0 --json
run fit --target abs --type 10,0 --json
run fit --target sign --type 4,4 --domain=-1,1
run fit --target sign --type 4,4 --gap 0.2 --domain=-1,-0.1\;0.1,1
run fit --target jumprelu --theta nan --type 4,4
run fit --target jumprelu --theta 5 --type 4,4
run fit --type 4,4 --method aaa --json
run fit --type 3,2 --method aaa
run fit --type 0,0 --json
run study --n-max 0
run study --n-max 2 --no-progress --figure /proc/x.png
run study --n-max 2 --no-progress --json-out /tmp
run study --n-max 2 --no-progress --json-out ''
run certify --type 4,4 --rtol nan
run certify --type 4,4 --rtol -1
run certify --type 4,4 --prec 8
run certify --type 4,4 --prec 40 --json --no-progress
run certify --type 4,4 --max-seconds -5
run certify --target foo --type 4,4
run certify --type 4,4 --json --no-progress
run certify --target relu --type 5,4 --json --no-progress
run certify --target sign --type 4,4 --json --no-progress
run claims --only nope
run nope
