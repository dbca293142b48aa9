# Every target calls a script in scripts/; see README.md.
.PHONY: server test bench bench-store bench-api bench-sched bench-pods bench-net bench-start lint release e2e deps

server:
	bash scripts/server.sh

test:
	bash scripts/test.sh

bench:
	bash scripts/bench.sh

bench-store:
	bash scripts/bench.sh store

bench-api:
	bash scripts/bench.sh api

bench-sched:
	bash scripts/bench.sh sched

bench-pods:
	bash scripts/bench.sh pods

bench-net:
	bash scripts/bench.sh net

bench-start:
	bash scripts/bench.sh start

lint:
	bash scripts/lint.sh

release:
	bash scripts/release.sh

e2e:
	bash scripts/e2e.sh

deps:
	bash scripts/deps.sh
