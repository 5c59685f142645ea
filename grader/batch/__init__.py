"""Grading a class: the run (run.py), its grading processes or threads (processes.py, threads.py),
one student graded and written (student.py), the files each student and the class get, written
atomically, and resuming (files.py), the progress line (progress.py).
"""
