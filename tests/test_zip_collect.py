"""Collecting an LMS zip (Canvas, Moodle, Blackboard, plain) with the real ``nbgrader zip_collect``.

Every zip is built here from the real release notebook, and every collect runs in a temp copy of
the course. Each student's copy is marked in its metadata, so a notebook filed under the wrong
student fails the byte comparison.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import nbformat
import pytest

from unet_grader import collect
from unet_grader.collect import ZipCollectError, collect_zip, normalise, student_of
from unet_grader.assignment import ASSIGNMENT, NOTEBOOK

from conftest import RELEASE_NOTEBOOK


def notebook_of(owner: str) -> bytes:
    """The release notebook, marked with whose it is."""
    nb = nbformat.read(RELEASE_NOTEBOOK, as_version=4)
    nb.metadata["test_owner"] = owner
    return nbformat.writes(nb).encode()


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            if name.endswith("/"):
                archive.mkdir(name)  # a folder entry with the usual drwxrwxrwx mode
            else:
                archive.writestr(zipfile.ZipInfo(name), data, zipfile.ZIP_DEFLATED)  # ZipInfo keeps the name exactly, '..' included
    return path


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def submitted(course: Path, student: str) -> bytes:
    return (course / "submitted" / student / ASSIGNMENT / NOTEBOOK).read_bytes()


@pytest.mark.parametrize("member, student", [
    ("smithjohn_12345_67890_unet_segmentation.ipynb", "smithjohn"),
    ("smithjohn_LATE_12345_67890_unet_segmentation-1.ipynb", "smithjohn"),
    ("Jane Doe_12345_assignsubmission_file_unet_segmentation.ipynb", "jane_doe"),
    ("Jane Doe_12345_assignsubmission_file/unet_segmentation.ipynb", "jane_doe"),
    ("Participant_777_assignsubmission_file_/unet_segmentation.ipynb", "participant_777"),
    ("HW 3_jdoe42_attempt_2024-03-01-10-15-00_unet_segmentation.ipynb", "jdoe42"),
    ("Alice.ipynb", "alice"),
    ("alice/unet_segmentation.ipynb", "alice"),
    ("class of 2025/Bob O'Neil.ipynb", "bob_o_neil"),
    ("Zoë Ängström.ipynb", "zoe_angstrom"),
    ("-rf.ipynb", "rf"),
    ("unet_segmentation.ipynb", None),
])
def test_student_ids_from_lms_file_names(member, student):
    assert student_of(member) == student


def test_ids_are_safe_folder_names_even_without_ascii_letters():
    assert normalise("李雷") != normalise("韩梅") and normalise("李雷").startswith("student_")
    assert normalise("../../etc") == "etc" and normalise("A/B\\C") == "a_b_c"


@pytest.mark.slow
def test_canvas_moodle_blackboard_and_plain_names_land_in_their_folders(make_course, tmp_path):
    course = make_course()
    members = {
        "smithjohn_12345_67890_unet_segmentation.ipynb": "smithjohn",
        "leeann_late_23456_78901_unet_segmentation-1.ipynb": "leeann",
        "Jane Doe_12345_assignsubmission_file_unet_segmentation.ipynb": "jane_doe",
        "Max Mustermann_12346_assignsubmission_file/unet_segmentation.ipynb": "max_mustermann",
        "HW 3_jdoe42_attempt_2024-03-01-10-15-00_unet_segmentation.ipynb": "jdoe42",
        "alice.ipynb": "alice",
        "bob/unet_segmentation.ipynb": "bob",
    }
    before = files_under(course)
    zip_path = make_zip(tmp_path / "Course Download.zip", {name: notebook_of(who) for name, who in members.items()})

    assert collect_zip(course, zip_path) == sorted(members.values())

    for who in members.values():
        assert submitted(course, who) == notebook_of(who)
    assert sorted(p.name for p in (course / "submitted").iterdir()) == sorted(members.values())
    after = {k: v for k, v in files_under(course).items() if not k.startswith(("submitted/", "downloaded/"))}
    assert after == before  # nothing else in the course was written


@pytest.mark.slow
def test_odd_names_junk_and_nested_archives_and_recollect(make_course, tmp_path):
    course = make_course()
    keep = course / "submitted" / "keep" / ASSIGNMENT / NOTEBOOK
    old = course / "submitted" / "zoe_angstrom" / ASSIGNMENT / NOTEBOOK
    for path in (keep, old):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"earlier")
    long_name = "x" * 200
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as nested:
        nested.writestr("mallory.ipynb", notebook_of("mallory"))
    zip_path = make_zip(tmp_path / "DOWNLOAD.ZIP", {
        "Zoë Ängström_5_assignsubmission_file/Mein Notebook (1).ipynb": notebook_of("zoe"),
        "李雷_6_assignsubmission_file_unet_segmentation.ipynb": notebook_of("lilei"),
        f"{long_name}.ipynb": notebook_of("long"),
        "  spaced   out  .ipynb": notebook_of("spaced"),
        "__MACOSX/._alice.ipynb": b"resource fork",
        "bob/.ipynb_checkpoints/unet_segmentation-checkpoint.ipynb": b"checkpoint",
        "bob/unet_segmentation.ipynb": notebook_of("bob"),
        "bob/notes.txt": b"not a notebook",
        "carol/extra.zip": inner.getvalue(),
    })

    students = collect_zip(course, zip_path)

    lilei = normalise("李雷")
    assert students == sorted(["zoe_angstrom", lilei, long_name, "spaced_out", "bob"])
    for who, owner in [("zoe_angstrom", "zoe"), (lilei, "lilei"), (long_name, "long"), ("spaced_out", "spaced"), ("bob", "bob")]:
        assert submitted(course, who) == notebook_of(owner)
    assert keep.read_bytes() == b"earlier"  # students not in the zip are left alone
    assert not (course / "submitted" / "mallory").exists() and not (course / "submitted" / "alice").exists()
    assert not list((course / "downloaded").rglob("mallory.ipynb"))  # the nested zip stayed packed


@pytest.fixture
def course_with_work(make_course):
    """A course whose submitted/ already holds a student's work, to show failed collects leave it alone."""
    course = make_course()
    path = course / "submitted" / "keep" / ASSIGNMENT / NOTEBOOK
    path.parent.mkdir(parents=True)
    path.write_bytes(b"earlier")
    return course


@pytest.mark.parametrize("members, message", [
    ({}, "empty zip"),
    ({"readme.txt": b"hi", "data/": b""}, "no .ipynb"),
    ({"../../evil.ipynb": b"{}"}, "outside"),
    ({"ok/../../evil.ipynb": b"{}"}, "outside"),
    ({"/tmp/evil.ipynb": b"{}"}, "outside"),
    ({"..\\evil.ipynb": b"{}"}, "outside"),
    ({"C:/evil.ipynb": b"{}"}, "outside"),
    ({"é" * 200 + ".ipynb": b"{}"}, "255 bytes"),
    ({"unet_segmentation.ipynb": b"{}"}, "cannot tell whose"),
    ({"smithjohn_1_2_unet_segmentation.ipynb": b"{}", "SmithJohn.ipynb": b"{}"}, "smithjohn: smithjohn_1_2_unet_segmentation.ipynb, SmithJohn.ipynb"),
    ({"Jane Doe_1_assignsubmission_file/a.ipynb": b"{}", "Jane Doe_1_assignsubmission_file/b.ipynb": b"{}"}, "jane_doe:"),
])
def test_bad_zips_are_refused_by_name_and_nothing_is_written(course_with_work, tmp_path, members, message):
    before = files_under(course_with_work)
    zip_path = make_zip(tmp_path / "lms.zip", members)
    with pytest.raises(ZipCollectError, match="lms.zip") as error:
        collect_zip(course_with_work, zip_path)
    assert message in str(error.value)
    assert files_under(course_with_work) == before and not (course_with_work / "downloaded").exists()


@pytest.mark.parametrize("content", [b"", b"this is not a zip", b"PK\x03\x04 truncated"])
def test_not_a_zip_is_refused_by_name(course_with_work, tmp_path, content):
    path = tmp_path / "submissions.zip"
    path.write_bytes(content)
    with pytest.raises(ZipCollectError, match=r"submissions\.zip is not a zip file"):
        collect_zip(course_with_work, path)
    with pytest.raises(ZipCollectError, match=r"missing\.zip is not a zip file"):
        collect_zip(course_with_work, tmp_path / "missing.zip")
    assert not (course_with_work / "downloaded").exists()


def test_zip_bomb_is_refused_before_extracting(course_with_work, tmp_path, monkeypatch):
    monkeypatch.setattr(collect, "MAX_UNCOMPRESSED", 10_000)  # a real 2 GiB zip is too slow to build here
    zip_path = make_zip(tmp_path / "bomb.zip", {"alice.ipynb": b"{}", "padding.txt": b"\0" * 20_000})
    assert zip_path.stat().st_size < 10_000  # it is the unpacked size that counts
    with pytest.raises(ZipCollectError, match="bomb.zip would unpack to .* zip bomb"):
        collect_zip(course_with_work, zip_path)
    assert not (course_with_work / "downloaded").exists()


def test_unreadable_members_are_refused(course_with_work, tmp_path):
    info = zipfile.ZipInfo("alice.ipynb")
    info.external_attr = 0o100000 << 16  # a regular file with mode 000: nbgrader could not copy it
    with zipfile.ZipFile(tmp_path / "modes.zip", "w") as archive:
        archive.writestr(info, b"{}")
    with pytest.raises(ZipCollectError, match="modes.zip: member 'alice.ipynb' has permissions"):
        collect_zip(course_with_work, tmp_path / "modes.zip")


def test_a_folder_that_is_not_a_course_is_refused(tmp_path):
    with pytest.raises(ZipCollectError, match="no nbgrader_config.py"):
        collect_zip(tmp_path, tmp_path / "x.zip")
