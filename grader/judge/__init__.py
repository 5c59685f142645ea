"""Verdicts: each gradient the sandbox returned against autograd's (compare), hints and
explanations, probes, the integrity scan, views of failures, the grading of stubs, of lecture-style
code and of exercise 4, and the points.
"""
