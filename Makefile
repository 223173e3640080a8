# The README's two commands: `make demo` and `make test`. Both set up what is missing first.
.PHONY: bootstrap demo test lint bench clean

bootstrap:
	@bash scripts/bootstrap.sh

demo: bootstrap
	@bash scripts/demo.sh

lint: bootstrap
	.venv/bin/ruff check keyadmin tests bench
	.venv/bin/mypy

test: lint
	.venv/bin/python -m pytest -q -ra -p no:cacheprovider

bench: bootstrap
	.venv/bin/python bench/run.py

clean:
	rm -rf .demo .pytest_cache .mypy_cache .ruff_cache
