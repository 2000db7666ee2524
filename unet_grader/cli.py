"""The instructor's commands: one per step, nbgrader's own CLI underneath.

    python -m unet_grader release              # solutions/ -> assignments/ (nbgrader generate_assignment)
    python -m unet_grader examples             # write example submissions into submitted/
    python -m unet_grader collect DIR          # DIR/<student>.ipynb -> submitted/<student>/...
    python -m unet_grader collect FILE.zip     # an LMS download, through nbgrader zip_collect
    python -m unet_grader autograde            # every submission, with a progress bar and a summary
    python -m unet_grader --db URL autograde --workers 2   # shared PostgreSQL gradebook, in parallel
    python -m unet_grader --db URL autograde --scheduler tcp://HOST:8786   # on a Dask cluster
    python -m unet_grader feedback             # nbgrader generate_feedback (hidden tests removed)
    python -m unet_grader export               # grades.csv (nbgrader export)
    python -m unet_grader bundle dist/student  # what a graded offering hands out: release + student wheel
    python -m unet_grader specs [--check]      # maintainers: the expected-layer specifications
    python -m unet_grader editions [--check]   # maintainers: the Chinese edition (editions/zh-CN) from i18n/

Every command works on the course folder given by ``--course`` (default: the current folder),
which must hold ``nbgrader_config.py``; ``--course`` and ``--db`` go before or after the command.
Installed as the ``unet-grader`` command too.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from unet_grader.coursedir import DB_ENV, REPOSITORY, Course, CourseError


def _course_options(parser: argparse.ArgumentParser, course, db) -> None:
    parser.add_argument("--course", type=Path, default=course,
                        help="course folder (holds nbgrader_config.py; default: the current folder)")
    parser.add_argument("--db", default=db, help=f"gradebook URL (default: sqlite gradebook.db in the course;"
                                                 f" also ${DB_ENV})")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m unet_grader", description=__doc__.split("\n")[0])
    _course_options(parser, Path.cwd(), None)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name, **kwargs):  # --course and --db after the command too: `autograde --db URL`
        sub = commands.add_parser(name, **kwargs)
        _course_options(sub, argparse.SUPPRESS, argparse.SUPPRESS)  # given there, they replace the main ones
        return sub

    command("release", help="generate assignments/ from solutions/")
    command("examples", help="write example submissions into submitted/")
    collect = command("collect", help="copy DIR/<student>.ipynb (or an LMS zip) into submitted/")
    collect.add_argument("folder", type=Path, help="a folder of <student>.ipynb files, or a .zip from the LMS")
    grade = command("autograde", help="autograde submissions and print a summary")
    grade.add_argument("--student", action="append", help="only these students (repeatable)")
    grade.add_argument("--workers", type=int, default=1,
                       help="submissions graded at once on a local Dask cluster (each needs ~1 core and ~1.2 GB;"
                            " needs a PostgreSQL --db)")
    grade.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="grade on this Dask cluster: one task per submission; its workers need the course"
                            " installed and the PostgreSQL --db reachable, no shared folder")
    command("feedback", help="generate feedback HTML for every graded submission")
    export = command("export", help="export grades to CSV")
    export.add_argument("--to", type=Path, default=Path("grades.csv"))
    bundle = command("bundle", help="build what students receive: the release notebook and the student wheel")
    bundle.add_argument("out", type=Path, nargs="?", default=Path("dist/student"))
    specs = commands.add_parser("specs", help="regenerate unet_course/expected_layers.json from the reference")
    specs.add_argument("--check", action="store_true", help="only check that it is up to date (exit 1 if not)")
    editions = commands.add_parser("editions", help="generate the translated editions (editions/) from the English"
                                                    " source and the catalogues in i18n/")
    editions.add_argument("--check", action="store_true", help="only check that they are up to date (exit 1 if not)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.db:
        os.environ[DB_ENV] = args.db  # nbgrader_config.py hands it to every nbgrader command
    try:
        if args.command == "specs":
            from unet_grader import specs

            fresh = specs.write(check=args.check)
            if args.check and not fresh:
                print("error: unet_course/expected_layers.json is out of date: run `python -m unet_grader specs`",
                      file=sys.stderr)
                return 1
            print("expected-layer specifications " + ("up to date" if fresh else "written"))
            return 0
        if args.command == "editions":
            from unet_grader import editions

            return editions.main(check=args.check)
        course = Course(args.course)
        if course.language:  # an edition's language (its nbgrader_config.py), unless UNET_COURSE_LANG is set
            from unet_course.i18n import LANGUAGE_ENV

            os.environ.setdefault(LANGUAGE_ENV, course.language)
        if args.command == "release":
            from unet_grader.release import release

            print(f"release written to {release(course)}")
        elif args.command == "bundle":
            from unet_grader.release import build_bundle

            if course.root != REPOSITORY and course.root.parent != REPOSITORY / "editions":
                raise CourseError("bundle builds the student wheel from this repository: run it in the repository"
                                  " (or on one of its editions, --course editions/zh-CN)")
            files = build_bundle(args.out, course)
            print(f"student bundle in {args.out.resolve()}:")
            for path in files:
                print(f"  {path.relative_to(args.out.resolve())}")
        elif args.command == "examples":
            from unet_grader.examples import write_examples

            print("example submissions:", ", ".join(write_examples(course)))
        elif args.command == "collect":
            from unet_grader.collect import collect

            print("collected:", ", ".join(collect(course.root, args.folder)))
        elif args.command == "autograde":
            from unet_grader.batch import autograde
            from unet_grader.report import summary_table

            print(summary_table(autograde(course, args.student, workers=args.workers, scheduler=args.scheduler)))
        elif args.command == "feedback":
            from unet_grader.report import feedback

            print(f"feedback written to {feedback(course)}")
        elif args.command == "export":
            from unet_grader.report import export

            print(f"grades written to {export(course, args.to.resolve())}")
    except CourseError as error:
        from unet_course.i18n import _

        print(_("error: {error}").format(error=error), file=sys.stderr)
        return 1
    return 0
