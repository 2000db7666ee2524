"""The Simplified Chinese edition: generated from the English source and i18n/zh_CN, never drifting,
grading exactly like the English one, and speaking Chinese (messages through gettext)."""

from __future__ import annotations

import io
import json
import os
import re

import nbformat
import pytest

from conftest import RELEASE_NOTEBOOK, ROOT, SOURCE_NOTEBOOK
from unet_course import i18n
from unet_grader import editions
from unet_grader.assignment import ASSIGNMENT, NOTEBOOK

ZH = editions.ZH_CN
ZH_SOURCE = ZH.folder / "solutions" / ASSIGNMENT / NOTEBOOK
ZH_RELEASE = ZH.folder / "assignments" / ASSIGNMENT / NOTEBOOK
PO = ROOT / "unet_course" / "locale" / "zh_CN" / "LC_MESSAGES" / "unet_course.po"
CJK = re.compile(r"[\u4e00-\u9fff]")


def _json(path):
    return json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------
# The catalogue: every English markdown cell translated, from its current text
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(editions.sources()))
def test_every_markdown_cell_has_a_translation_of_its_current_english_text(name):
    english = _json(editions.sources()[name])
    catalogue = _json(ZH.catalogues / name)
    problems = editions.catalogue_problems(english, catalogue, name)
    assert not problems, "\n".join(problems) + "\n(translate or review, then run `python -m unet_grader editions`)"
    for entry in catalogue["cells"].values():
        assert CJK.search(entry["zh"]), entry["zh"][:80]


def test_a_changed_english_cell_is_named_until_its_translation_is_reviewed(tmp_path):
    english = _json(SOURCE_NOTEBOOK)
    catalogue = _json(ZH.catalogues / f"{ASSIGNMENT}.json")
    changed = next(c for c in english["cells"] if c["id"] == "7871bc45")
    changed["source"] = "".join(changed["source"]) + "\nOne more English sentence."
    [problem] = editions.catalogue_problems(english, catalogue, "unet_segmentation.json")
    assert "'7871bc45'" in problem and "changed in English" in problem and editions.cell_hash(changed["source"]) in problem
    # the command itself refuses, naming the cell
    from unet_grader.coursedir import CourseError, copy_course

    course = copy_course(tmp_path / "english", ROOT)
    (course / editions.TRAINING_NOTEBOOK).parent.mkdir(parents=True)
    (course / editions.TRAINING_NOTEBOOK).write_text((ROOT / editions.TRAINING_NOTEBOOK).read_text())
    (course / "solutions" / ASSIGNMENT / NOTEBOOK).write_text(json.dumps(english))
    with pytest.raises(CourseError, match="markdown cell '7871bc45' changed in English"):
        editions.write_sources(ZH, tmp_path / "zh", english_root=course)
    assert not (tmp_path / "zh").exists()


def test_a_cell_without_translation_is_named():
    english = _json(SOURCE_NOTEBOOK)
    catalogue = _json(ZH.catalogues / f"{ASSIGNMENT}.json")
    del catalogue["cells"]["trained_intro"]
    english["cells"].insert(3, {"cell_type": "markdown", "id": "brand_new", "metadata": {}, "source": "New text."})
    problems = editions.catalogue_problems(english, catalogue, "unet_segmentation.json")
    assert any("'trained_intro' has no translation" in p for p in problems), problems
    assert any("'brand_new' has no translation" in p for p in problems), problems


# --------------------------------------------------------------------------------------------
# The generated edition: the same code, tests, grade ids and points; no drift
# --------------------------------------------------------------------------------------------

def _code_cells(path):
    notebook = _json(path)
    return [(c["source"], c["metadata"]) for c in notebook["cells"] if c["cell_type"] != "markdown"]


@pytest.mark.parametrize("english, chinese", [(SOURCE_NOTEBOOK, ZH_SOURCE), (RELEASE_NOTEBOOK, ZH_RELEASE),
                                              (ROOT / editions.TRAINING_NOTEBOOK, ZH.folder / editions.TRAINING_NOTEBOOK)])
def test_the_edition_has_the_english_code_tests_grade_ids_and_points(english, chinese):
    assert _code_cells(chinese) == _code_cells(english)
    notebook = _json(chinese)
    assert notebook["metadata"]["unet_course"] == {"language": "zh_CN"}  # what unet_course.i18n reads
    markdown = [c for c in notebook["cells"] if c["cell_type"] == "markdown"]
    assert markdown and all(CJK.search("".join(c["source"])) for c in markdown)


def test_the_assignment_has_a_glossary_with_the_usual_terms():
    glossary = next(c for c in _json(ZH_RELEASE)["cells"] if c["id"] == "zh-glossary")
    text = "".join(glossary["source"])
    for term in ("语义分割", "转置卷积", "跳跃连接", "交并比", "编码器", "解码器", "池化", "逻辑值"):
        assert term in text, term


def test_the_edition_is_its_own_course_speaking_chinese():
    from unet_grader.coursedir import Course

    before = os.environ.get(i18n.LANGUAGE_ENV)
    course = Course(ZH.folder)
    assert course.release_notebook() == ZH_RELEASE and course.source_notebook() == ZH_SOURCE
    assert course.language == ("zh_CN" if before is None else before)
    assert os.environ.get(i18n.LANGUAGE_ENV) == before  # loading its config leaves this process alone


@pytest.mark.slow
def test_the_committed_edition_is_what_the_command_generates():
    """Like the English release drift test: regenerate (nbgrader generate_assignment) and compare."""
    problems = editions.drift(ZH)
    assert not problems, ("editions/zh-CN differs from what `python -m unet_grader editions` generates:\n  "
                          + "\n  ".join(problems))


# --------------------------------------------------------------------------------------------
# Messages: gettext catalogues that are complete and compiled
# --------------------------------------------------------------------------------------------

def _po():
    from babel.messages.pofile import read_po

    with open(PO, "rb") as file:
        return read_po(file, locale="zh_CN", domain=i18n.DOMAIN)


def test_the_compiled_catalogue_is_the_po_file():
    from babel.messages.mofile import write_mo

    compiled = io.BytesIO()
    write_mo(compiled, _po())
    assert compiled.getvalue() == PO.with_suffix(".mo").read_bytes(), "run `make messages` and commit the .mo"


def test_every_message_has_a_chinese_translation():
    untranslated = [m.id for m in _po() if m.id and not (all(m.string) if isinstance(m.id, tuple) else m.string)]
    assert not untranslated, untranslated
    assert all(CJK.search(s) for m in _po() if m.id for s in ([m.string] if isinstance(m.string, str) else m.string))


def test_every_message_in_the_code_is_in_the_catalogue():
    from babel.messages.extract import extract_from_dir

    in_code = set()
    for folder in ("unet_course", "unet_grader", "data_fetch"):
        for _, _, message, _, _ in extract_from_dir(ROOT / folder, method_map=[("**.py", "python")],
                                                    keywords={"_": None, "N_": None, "ngettext": (1, 2)}):
            in_code.add(message if isinstance(message, str) else tuple(message))
    in_po = {m.id if isinstance(m.id, str) else tuple(m.id) for m in _po() if m.id}
    assert in_code - in_po == set(), "run `make messages` and translate the new messages"


def test_the_language_comes_from_the_setting_then_the_notebook_then_the_locale(monkeypatch, tmp_path):
    for variable in i18n.ENVIRONMENT + ("JPY_SESSION_NAME",):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)
    assert i18n.language() == "en" and i18n._("All tests passed") == "All tests passed"
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    assert i18n._("All tests passed") == "全部测试通过"
    monkeypatch.setenv("LANG", "C.UTF-8")
    (tmp_path / NOTEBOOK).write_text(json.dumps({"cells": [], "metadata": {"unet_course": {"language": "zh_CN"}}}))
    assert i18n.language() == "zh_CN"  # the Chinese edition's notebook, found in the kernel's folder
    english = tmp_path / "english.ipynb"
    english.write_text(json.dumps({"cells": [], "metadata": {}}))
    monkeypatch.setenv("JPY_SESSION_NAME", str(english))
    assert i18n.language() == "en"  # JupyterLab named the open notebook: the English one, beside the Chinese
    monkeypatch.delenv("JPY_SESSION_NAME")
    monkeypatch.setenv(i18n.LANGUAGE_ENV, "en")
    assert i18n._("All tests passed") == "All tests passed"  # an explicit setting wins


def test_the_public_checks_speak_chinese_hints_included(monkeypatch):
    from unet_course.checks import check_public, failure_message
    from unet_grader.examples import MISTAKES, apply_mistake, solution_code

    monkeypatch.setenv(i18n.LANGUAGE_ENV, "zh_CN")
    source = nbformat.read(str(ZH_SOURCE), as_version=4)
    [cell] = [c for c in source.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "conv_block"]
    namespace: dict = {}
    exec("from tensorflow.keras.layers import Conv2D, Dropout, MaxPooling2D\n"
         + apply_mistake(solution_code(cell.source), MISTAKES["no_he_normal"]), namespace)
    problems = check_public("conv_block", namespace["conv_block"], verbose=False)
    message = failure_message("conv_block", problems)
    assert "个问题" in message and "第 1 层是 Conv2D" in message
    assert "使用 kernel_initializer='he_normal'" in message  # the hint


# --------------------------------------------------------------------------------------------
# Grading: the same code, the same scores; the Chinese edition's feedback in Chinese
# --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_same_code_gets_the_same_scores_in_both_editions_with_chinese_feedback(tmp_path):
    from unet_grader.batch import grade_one
    from unet_grader.coursedir import copy_course, nbgrader
    from unet_grader.examples import make_submission, write_submission
    from unet_grader.release import release
    from unet_grader.report import feedback, read_result, summary_table

    mistakes = ("no_he_normal", "concat_order")
    results = {}
    for name, origin in (("en", ROOT), ("zh", ZH.folder)):
        course = copy_course(tmp_path / name, origin)
        release(course)  # the assignment in the course's gradebook (nbgrader generate_assignment)
        release_nb = course / "assignments" / ASSIGNMENT / NOTEBOOK
        source = course / "solutions" / ASSIGNMENT / NOTEBOOK
        write_submission(make_submission(release_nb, source, mistakes=mistakes), course, "student")
        if name == "en":  # plain nbgrader, with a verifier of its own
            run = nbgrader(course, "autograde", ASSIGNMENT, "--force", check=False)
            assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        else:  # the course's batch: this process's warm grader, whose verifier was started in English
            grade_one(course, "student")
        results[name] = read_result(course, "student")
        results[name + "_course"] = course
    assert results["zh"].scores == results["en"].scores
    assert results["zh"].total[0] < results["zh"].total[1]  # the mistakes cost points in both

    zh_course = results["zh_course"]
    graded = (zh_course / "autograded" / "student" / ASSIGNMENT / NOTEBOOK).read_text(encoding="utf-8")
    errors = " ".join(json.loads(f'"{e}"') for e in re.findall(r'"evalue": "(.*?)",\n', graded))
    assert "使用 kernel_initializer='he_normal'" in errors and "拼接顺序颠倒了" in errors, errors[:800]
    english = (results["en_course"] / "autograded" / "student" / ASSIGNMENT / NOTEBOOK).read_text(encoding="utf-8")
    english_errors = " ".join(json.loads(f'"{e}"') for e in re.findall(r'"evalue": "(.*?)",\n', english))
    assert "use kernel_initializer='he_normal'" in english_errors and not CJK.search(english_errors)
    feedback(zh_course)
    page = (zh_course / "feedback" / "student" / ASSIGNMENT / "unet_segmentation.html").read_text(encoding="utf-8")
    assert "拼接顺序颠倒了" in page and "语义分割" in page
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(i18n.LANGUAGE_ENV, "zh_CN")
        assert "发现的问题" in summary_table([results["zh"]])
