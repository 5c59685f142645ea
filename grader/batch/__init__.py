"""Grading a class: discovery of the submissions, a pool of grading processes, the files each
student gets (written atomically), resuming, the progress bar and the class files.
"""
