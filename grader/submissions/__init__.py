"""Reading what students hand in, never running it: a .py file or a notebook becomes a
``Submission`` (stub format or lecture style); lecture-style source is analysed for the statements
to run; a class folder or zip is discovered. Imports only grader.lecture.
"""
