"""The instructor's side of the course: everything that grades students. Never given to students.

The assignment's identity (:mod:`.assignment`), the reference answers (:mod:`.reference`), the
verifier that decides test cells outside the student's process (:mod:`.verifier`), the bubblewrap
sandbox (:mod:`.sandbox`), nbgrader plug-ins (:mod:`.plugins`), course paths (:mod:`.coursedir`),
batch grading (:mod:`.batch`), reports (:mod:`.report`), collection (:mod:`.collect`), release
and the student bundle (:mod:`.release`), example submissions (:mod:`.examples`), the
maintainer's specifications (:mod:`.specs`) and the command line (:mod:`.cli`:
``python -m unet_grader``). The student side is the ``unet_course`` package.
"""
