# The two commands of the README: `make demo` runs the course on the embedded data,
# `make test` runs every test. Both create/reuse .venv first.
PY := .venv/bin/python

.PHONY: demo test venv release notebooks clean messages editions

venv:
	@bash tools/ensure-venv.sh

demo: venv
	$(PY) -m unet_grader.demo

test: venv
	$(PY) -m pytest

release: venv  ## regenerate the student release from solutions/
	$(PY) -m unet_grader release

messages: venv  ## extract the course's messages, update the catalogues, compile them (unet_course/locale)
	.venv/bin/pybabel extract -F babel.cfg -k N_ --add-location=file --sort-by-file --omit-header \
		--project=unet-course -o unet_course/locale/unet_course.pot unet_course unet_grader data_fetch
	.venv/bin/pybabel update -D unet_course -i unet_course/locale/unet_course.pot -d unet_course/locale \
		--ignore-obsolete --no-fuzzy-matching
	.venv/bin/pybabel compile -D unet_course -d unet_course/locale --statistics

editions: venv  ## regenerate the Chinese edition (editions/zh-CN) from the English source and i18n/
	$(PY) -m unet_grader editions

clean:  ## remove nbgrader working folders and the gradebook (not .venv, not data/)
	rm -rf submitted autograded feedback gradebook.db grades.csv runs

notebooks: venv  ## re-execute the notebooks, save their outputs: the solved assignment in its full setting (what readers see, minutes), the training story in the small one
	env -u UNET_COURSE_SMALL $(PY) -m jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=3600 --ExecutePreprocessor.store_widget_state=False --ExecutePreprocessor.record_timing=False solutions/*/*.ipynb
	UNET_COURSE_SMALL=1 $(PY) -m jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=1200 --ExecutePreprocessor.store_widget_state=False --ExecutePreprocessor.record_timing=False notebooks/*/*.ipynb
	$(PY) -m unet_grader release
	$(PY) -m unet_grader editions
