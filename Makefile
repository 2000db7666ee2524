# The two commands of the README: `make demo` runs the course on the embedded data,
# `make test` runs every test. Both create/reuse .venv first.
PY := .venv/bin/python

.PHONY: demo test venv release notebooks clean

venv:
	@bash tools/ensure-venv.sh

demo: venv
	$(PY) -m unet_grader.demo

test: venv
	$(PY) -m pytest

release: venv  ## regenerate the student release from solutions/
	$(PY) -m unet_grader release

clean:  ## remove nbgrader working folders and the gradebook (not .venv, not data/)
	rm -rf submitted autograded feedback gradebook.db grades.csv runs

notebooks: venv  ## re-execute the instructor notebooks (small setting) and save their outputs
	UNET_COURSE_SMALL=1 $(PY) -m jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=1200 --ExecutePreprocessor.store_widget_state=False --ExecutePreprocessor.record_timing=False solutions/*/*.ipynb notebooks/*/*.ipynb
	$(PY) -m unet_grader release
