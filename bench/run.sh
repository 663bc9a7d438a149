#!/bin/sh
# Measures Sallyport's bastion against OpenSSH used as a ProxyJump bastion
# (a plain sshd), to the same real sshd target, in one run on this machine.
# Needs OpenSSH's ssh and sshd (Debian: openssh-client openssh-server).
# Extra arguments are passed to go test, e.g.
#   bench/run.sh -bastion.mib=256 -bastion.only=throughput,latency
set -eu
cd "$(dirname "$0")/.."
exec go test ./bench/ -run '^$' -bench '^BenchmarkBastion$' -benchtime 1x -timeout 60m -count 1 -args "$@"
