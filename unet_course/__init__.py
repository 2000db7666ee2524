"""The student's side of the course: what a student's environment needs, and nothing that grades.

Run set-up (:mod:`.course`), data (:mod:`.data`, :mod:`.datasets`, :mod:`.synthetic`),
pictures (:mod:`.visualize`, :mod:`.diagram`), metrics (:mod:`.metrics`), the public checks
(:mod:`.checks`, against the shipped ``expected_layers.json``; :mod:`.evidence` is how a graded
notebook hands its models to the grader), training and evaluation (:mod:`.train`,
:mod:`.evaluate`). The answers and the grader live in ``unet_grader``, which students never get.
"""
