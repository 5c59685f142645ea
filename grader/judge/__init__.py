"""Verdicts: each gradient the sandbox returned against autograd's.

compare (one comparison), hints and mistakes (a known mistake recognised), explain (why right but
inexact), probes (random upstream gradients), integrity (autograd use), views (pictures of a
failure); grading (what a verdict is, one answer judged), stubs (exercises 1-3 in the lecture
config), hidden (hidden configs, probes, hard-coded sizes), exercise4 and references (backward()
and its training loop), lecture_style and lecture_run (lecture-style code); gradient_results
(verdicts folded into results), scoring (points and the Result), request (what decides a grade).
"""
